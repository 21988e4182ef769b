"""Where Cekura's API is and how it is asked (docs/upstream-behaviour.md)."""

DEFAULT_BASE_URL = "https://api.cekura.ai"
API_KEY_HEADER = "X-CEKURA-API-KEY"

PROJECTS_PATH = "/user/v1/projects/"  # a JSON array, no pagination
SESSIONS_PATH = "/test_framework/v1/scenario-improvement-sessions/"  # ?project_id=N; an array or DRF pages

# rows asked for per page (`page_size`, or `limit` on a limit/offset `next` link): as few requests
# as the server allows, up to its max_page_size; never more, so one answer stays a few MB
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000

ANSWER_DEADLINE_SECONDS = 300.0  # the longest one answer may take, headers to last byte, before it is retried


def detail_path(session_id: int) -> str:
    """`GET .../scenario-improvement-sessions/{id}/`: one session with `created_by` and
    `conversation_history` (ScenarioImprovementSessionDetail)."""
    return f"{SESSIONS_PATH}{session_id}/"
