"""Where Cekura's API is and how it is asked (cekura-api/openapi-subset.json)."""

DEFAULT_BASE_URL = "https://api.cekura.ai"
API_KEY_HEADER = "X-CEKURA-API-KEY"

PROJECTS_PATH = "/user/v1/projects/"  # a JSON array, no pagination
SESSIONS_PATH = "/test_framework/v1/scenario-improvement-sessions/"  # ?project_id=N; an array or DRF pages


def detail_path(session_id: int) -> str:
    """`GET .../scenario-improvement-sessions/{id}/`: one session with `created_by` and
    `conversation_history` (ScenarioImprovementSessionDetail)."""
    return f"{SESSIONS_PATH}{session_id}/"
