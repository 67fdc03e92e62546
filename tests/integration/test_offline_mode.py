"""Simulator mode: no credentials, a dev key under instance/, one shared embedded simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from app import create_app
from config import ConfigurationError
from tests.integration.conftest import Buyer, SimulatorHarness, button_config
from tests.support.servers import APP_VARIABLES, REPO_ROOT


def offline_config(instance: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
    config.update({"INSTANCE_PATH": str(instance), "TESTING": True, **extra})
    return config


@pytest.fixture
def offline_apps(tmp_path: Path) -> Iterator[list[Flask]]:
    apps: list[Flask] = []
    yield apps
    for app in reversed(apps):
        app.extensions["shop"].close()


def test_offline_app_starts_and_its_checkout_js_answers(
    tmp_path: Path, offline_apps: list[Flask]
) -> None:
    app = create_app(offline_config(tmp_path / "instance"))
    offline_apps.append(app)

    page = app.test_client().get("/wallet")
    config = button_config(page)
    script = page.get_data(as_text=True).split('<script src="', 1)[1].split('"', 1)[0]

    assert script.startswith("http://127.0.0.1:")
    assert script.endswith("/checkout.js")
    answer = requests.get(script, timeout=5)
    assert answer.status_code == 200
    assert "renderButton" in answer.text
    assert config["publicKeyId"] == "SANDBOX-SIMULATOR-DEV"
    assert config["sandbox"] is True
    assert (tmp_path / "instance" / "amazonpay-dev-private.pem").stat().st_mode & 0o077 == 0
    assert (tmp_path / "instance" / "secret_key").exists()


def test_offline_wallet_flow_works_end_to_end(
    tmp_path: Path, database_url: str, offline_apps: list[Flask]
) -> None:
    app = create_app(offline_config(tmp_path / "instance", DATABASE_URL=database_url))
    offline_apps.append(app)
    base_url = app.extensions["simulator"].base_url
    person = Buyer(app.test_client(), SimulatorHarness(None, base_url))

    trip = person.pay("/wallet", "1111")

    assert trip.response.status_code == 303
    assert "Amazon Pay is saved" in person.follow(trip.response).get_data(as_text=True)


def test_apps_on_one_instance_share_the_simulator_and_take_over_a_dead_one(
    tmp_path: Path, offline_apps: list[Flask]
) -> None:
    instance = tmp_path / "instance"
    first = create_app(offline_config(instance))
    offline_apps.append(first)
    second = create_app(offline_config(instance))
    offline_apps.append(second)

    url = first.extensions["shop"].checkout_js_url
    assert second.extensions["shop"].checkout_js_url == url
    assert second.extensions["simulator"].handle is None  # reused, not started
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]

    first.extensions["simulator"].shutdown()  # the owning worker died
    third = create_app(offline_config(instance))
    offline_apps.append(third)

    assert third.extensions["shop"].checkout_js_url == url  # same port, pages keep working
    assert requests.get(url, timeout=5).status_code == 200


_START_APP = """
import sys
from app import create_app
app = create_app({"INSTANCE_PATH": sys.argv[1]})
print(app.extensions["shop"].checkout_js_url, flush=True)
sys.stdin.read()
"""


def test_processes_starting_together_share_one_simulator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _START_APP, str(tmp_path / "instance")],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        urls = {p.stdout.readline().strip() for p in processes if p.stdout is not None}
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=30)

    assert len(urls) == 1
    assert next(iter(urls)).startswith("http://127.0.0.1:")


def test_misconfiguration_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        create_app(offline_config(tmp_path / "instance", AMAZON_PAY_REGION="xx"))
    assert str(raised.value) == "AMAZON_PAY_REGION: unknown region 'xx' (expected na, eu, uk, jp)"


def test_credentials_without_a_readable_key_stop_start_up(tmp_path: Path) -> None:
    config = offline_config(
        tmp_path / "instance",
        AMAZON_PAY_PUBLIC_KEY_ID="SANDBOX-X",
        AMAZON_PAY_PRIVATE_KEY=str(tmp_path / "missing.pem"),
        SECRET_KEY="s" * 32,
    )
    with pytest.raises(ConfigurationError, match=r"^AMAZON_PAY_PRIVATE_KEY: "):
        create_app(config)


def test_db_upgrade_command(tmp_path: Path, database_url: str, offline_apps: list[Flask]) -> None:
    app = create_app(offline_config(tmp_path / "instance", DATABASE_URL=database_url))
    offline_apps.append(app)

    result = app.test_cli_runner().invoke(args=["db", "upgrade"])

    assert result.exit_code == 0
    assert "database schema is current" in result.output
    current = app.test_cli_runner().invoke(args=["db", "current"])
    assert (current.exit_code, current.output) == (0, result.output)
