"""Shared fixtures and the rule that a skipped test fails the run: a missing dependency must be loud."""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and exitstatus == 0:
        # A suite that silently skips (no Chromium, no PostgreSQL, no npm) is not a pass.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
