"""A real browser against the real offline demo: gunicorn serving `app:create_app()` with no
Amazon Pay credentials (embedded simulator, SQLite and keys under a temp instance dir), driven by
Debian's Chromium through Playwright. Screenshots land in test-artifacts/e2e/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.support.browser import CHROMIUM_ARGS, CSP_LISTENER_SCRIPT, chromium_path
from tests.support.servers import REPO_ROOT, ServerProcess, clean_environment, start_gunicorn

ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
STEP_TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="package")
def shop_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The offline demo exactly as `make run` serves it, but on a free port and a temp instance."""
    work = tmp_path_factory.mktemp("e2e")
    env = clean_environment({"APP_INSTANCE_PATH": str(work / "instance")})
    server: ServerProcess = start_gunicorn(
        env=env, log_dir=work / "logs", name="shop-offline", workers=2, threads=4
    )
    yield server.base_url
    server.stop()


# Package scope, not session: a running sync Playwright owns the thread's event loop, and other
# suites (tests/simulator) start their own Playwright after this package has finished.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        executable = chromium_path()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    launched = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@dataclass
class BrowsingSession:
    """One buyer's tab, with everything the browser complained about."""

    page: Page
    name: str
    console: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    shots: int = 0

    def screenshot(self, step: str) -> Path:
        self.shots += 1
        path = ARTIFACTS / f"{self.name}-{self.shots:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def csp_violations(self) -> list[str]:
        """From the console (Chromium logs each) and from securitypolicyviolation events."""
        return [m for m in self.console if "Content Security Policy" in m] + self.violations

    def assert_clean(self) -> None:
        """No CSP violation and no uncaught script error on any page of this tab."""
        assert self.csp_violations() == [], self.console
        assert self.page_errors == [], self.page_errors


@pytest.fixture
def tab(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowsingSession]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.add_init_script(CSP_LISTENER_SCRIPT)
    page = context.new_page()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:120]
    session = BrowsingSession(page=page, name=name)
    context.expose_binding(
        "__reportCspViolation", lambda _source, text: session.violations.append(str(text))
    )

    def on_console(message: ConsoleMessage) -> None:
        session.console.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: session.page_errors.append(str(error)))
    yield session
    try:
        session.screenshot("last")
    finally:
        context.close()
