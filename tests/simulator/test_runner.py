"""`python -m amazonpay.simulator` as an operator runs it, and the never-a-stack-trace rule."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from amazonpay import signing
from amazonpay.simulator import Simulator, serve_in_thread
from tests.simulator.conftest import Api, Keys, public_keys, session_payload

ROOT = Path(__file__).resolve().parents[2]


def start_runner(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start `python -m amazonpay.simulator` and read what it prints until it listens."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "amazonpay.simulator", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    info: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        name, _, value = line.partition(":")
        if line.startswith("Amazon Pay simulator listening on"):
            info["base_url"] = line.rsplit(" ", 1)[1].strip()
            break
        info[name.strip()] = value.strip()
    return process, info


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    process, info = start_runner(["--key-dir", str(tmp_path)])
    try:
        yield process, info
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_runner_generates_a_dev_key_and_serves_it(
    runner: tuple[subprocess.Popen[str], dict[str, str]], keys: Keys
) -> None:
    _, info = runner
    key_id, key_path = info["public key id"], Path(info["private key"])
    assert key_id.startswith("SANDBOX-")
    assert key_path.parent.exists()
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    private_key = signing.load_private_key(key_path.read_bytes())
    api = Api(info["base_url"], keys, key_id=key_id)
    response = api.call(
        "POST",
        "/checkoutSessions",
        session_payload(),
        idempotency_key="r1",
        private_key=private_key,
    )
    assert response.status_code == 201, response.text
    assert requests.get(info["base_url"] + "/_simulator/health", timeout=5).status_code == 200


def test_a_simulator_bug_is_a_json_500_not_a_stack_trace(keys: Keys) -> None:
    def broken_clock() -> Any:
        return "not a datetime"

    handle = serve_in_thread(Simulator(public_keys=public_keys(keys), clock=broken_clock))
    try:
        response = Api(handle.base_url, keys).call("GET", "/checkoutSessions/x")
        assert response.status_code == 500
        assert response.json() == {
            "reasonCode": "InternalServerError",
            "message": "Internal simulator error",
        }
        assert response.headers["x-amz-pay-request-id"]
    finally:
        handle.shutdown()


def test_runner_flags_key_file_no_control_api_and_throttling(tmp_path: Path, keys: Keys) -> None:
    key_file = tmp_path / "public.pem"
    key_file.write_bytes(keys.public_pem(keys.private))
    process, info = start_runner(
        ["--public-key", f"SANDBOX-FROMFILE={key_file}", "--no-control-api", "--throttling"]
    )
    try:
        assert "public key id" not in info  # nothing generated when a key is given
        api = Api(info["base_url"], keys, key_id="SANDBOX-FROMFILE")
        statuses = [api.call("GET", "/checkoutSessions/x").status_code for _ in range(11)]
        assert statuses == [404] * 10 + [429]  # Get Checkout Session: sandbox burst 10
        assert requests.get(info["base_url"] + "/_simulator/health", timeout=5).status_code == 404
        assert requests.get(info["base_url"] + "/checkout.js", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
