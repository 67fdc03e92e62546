"""Shared fixtures, and the rule that a skipped test fails the run (missing deps must be loud)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `.venv/bin/pytest` does not put the project on sys.path: make `app`, `amazonpay` and the
# shared helpers in `tests/support` importable for every test directory.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.postgres import (  # noqa: E402 - needs the path above
    PostgresServer,
    PostgresUnavailableError,
    running_postgres,
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and exitstatus == 0:
        # A suite that silently skips (no Chromium, no PostgreSQL, no npm) is not a pass.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session; fails (never skips) when it cannot start."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailableError as exc:
        pytest.fail(f"PostgreSQL is required by this test and could not be started: {exc}")


@pytest.fixture(scope="module")
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test module: `postgresql://postgres@127.0.0.1:PORT/NAME`."""
    url = postgres_server.create_database(request.module.__name__)
    yield url
    postgres_server.drop_database(url)
