"""What `--db` names: a DuckDB file, a PostgreSQL URL (password never shown) or MotherDuck."""

from __future__ import annotations

from pathlib import Path

import pytest
from cekura_sessions.destination.address import (
    DUCKDB,
    MOTHERDUCK,
    POSTGRES,
    DestinationError,
    parse_destination,
    password_of,
    redacted,
)

SECRET = "s3cr%40t-Pw"  # percent-encoded '@': the password as a URL carries it


@pytest.mark.parametrize(
    "value, kind, shown",
    [
        pytest.param("cekura.duckdb", DUCKDB, "cekura.duckdb", id="relative-file"),
        pytest.param("/var/lib/x/c.duckdb", DUCKDB, "/var/lib/x/c.duckdb", id="absolute-file"),
        pytest.param(f"postgresql://loader:{SECRET}@db.internal:5432/analytics", POSTGRES,
                     "postgresql://loader:***@db.internal:5432/analytics", id="postgresql-url"),
        pytest.param(f"postgres://loader:{SECRET}@db.internal/analytics?sslmode=require", POSTGRES,
                     "postgres://loader:***@db.internal/analytics?sslmode=require", id="postgres-scheme-sslmode"),
        pytest.param("postgresql://postgres:@/cekura?host=/tmp/pg", POSTGRES,
                     "postgresql://postgres:@/cekura?host=/tmp/pg", id="socket-no-password"),
        pytest.param(f"postgresql:///cekura?host=/tmp/pg&password={SECRET}", POSTGRES,
                     "postgresql:///cekura?host=/tmp/pg&password=***", id="password-parameter"),
        pytest.param("md:cekura", MOTHERDUCK, "md:cekura", id="motherduck"),
    ],
)
def test_db_value_names_its_destination_and_never_shows_the_password(value, kind, shown):
    destination = parse_destination(value)
    assert destination.kind == kind
    assert str(destination) == shown
    assert "s3cr" not in str(destination) and "s3cr" not in repr(destination)
    if kind == DUCKDB:
        assert destination.path == Path(value)


def test_a_home_relative_file_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_destination("~/c.duckdb").path == tmp_path / "c.duckdb"


@pytest.mark.parametrize(
    "value, says",
    [
        pytest.param(f"postgresql://loader:{SECRET}@db.internal:5432", "names no database", id="no-database"),
        pytest.param(f"mysql://loader:{SECRET}@db.internal/x", "mysql:// is not a destination", id="other-scheme"),
        pytest.param("  ", "--db is empty", id="empty"),
    ],
)
def test_a_db_value_that_names_no_destination_is_refused_in_one_line(value, says):
    with pytest.raises(DestinationError) as caught:
        parse_destination(value)
    message = str(caught.value)
    assert says in message and "\n" not in message
    assert "s3cr" not in message, "the password reached the message"


def test_redacted_leaves_a_url_without_password_alone():
    assert redacted("postgresql://reader@db/analytics") == "postgresql://reader@db/analytics"


@pytest.mark.parametrize("url, password", [
    pytest.param(f"postgresql://loader:{SECRET}@db/analytics", "s3cr@t-Pw", id="user-part-decoded"),
    pytest.param(f"postgresql:///analytics?host=/tmp/pg&password={SECRET}", "s3cr@t-Pw", id="parameter-decoded"),
    pytest.param("postgresql://reader@db/analytics", None, id="none"),
    pytest.param("cekura.duckdb", None, id="a-file"),
])
def test_password_of_finds_what_every_log_line_must_mask(url, password):
    assert password_of(url) == password
