"""Interoperability with Amazon's official Node SDK (@amazonpay/amazon-pay-api-sdk-nodejs).

The SDK speaks only https and is pointed at the simulator with its `overrideServiceUrl`
(host:port, docs section 15), so the simulator is served over TLS with a throw-away
certificate. The SDK's own signatures must be accepted with both algorithms, and a body changed
after signing must be refused. Missing node_modules is a failure, never a skip: run
`npm ci --prefix tests/interop` (the Makefile does).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay.simulator import SIMULATOR_STORE_ID, ServerHandle, Simulator, serve_in_thread
from tests.support.certs import write_tls_files

HERE = Path(__file__).parent
DRIVER = HERE / "driver.js"
SDK = HERE / "node_modules" / "@amazonpay" / "amazon-pay-api-sdk-nodejs"
KEY_ID = "SANDBOX-NODESDKINTEROP00000000"
PLAIN_KEY_ID = "NODESDKINTEROP00000000"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with `cryptography`."""
    return write_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(
    private_key: rsa.RSAPrivateKey, tls_files: tuple[Path, Path]
) -> Iterator[ServerHandle]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    public = private_key.public_key()
    handle = serve_in_thread(
        Simulator(public_keys={KEY_ID: public, PLAIN_KEY_ID: public}), ssl_context=context
    )
    yield handle
    handle.shutdown()


def run_driver(
    server: ServerHandle,
    private_key: rsa.RSAPrivateKey,
    ca_file: Path,
    steps: list[dict[str, Any]],
    *,
    algorithm: str | None,
    key_id: str = KEY_ID,
) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is required for the interop test"
    assert SDK.is_dir(), "run `npm ci --prefix tests/interop` first: the Node SDK is missing"
    config: dict[str, Any] = {
        "publicKeyId": key_id,
        "privateKey": private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "region": "us",
        "sandbox": True,
        "overrideServiceUrl": f"127.0.0.1:{server.port}",
    }
    if algorithm is not None:
        config["algorithm"] = algorithm
    result = subprocess.run(
        [node, str(DRIVER)],
        input=json.dumps({"config": config, "caFile": str(ca_file), "steps": steps}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=HERE,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca_file)},
    )
    assert result.returncode == 0, result.stderr
    results: list[dict[str, Any]] = json.loads(result.stdout)
    return results


def play_buyer(server: ServerHandle, session_id: str, ca_file: Path) -> None:
    response = requests.post(
        f"{server.base_url}/_simulator/sessions/{session_id}/outcome",
        json={"outcome": "success"},
        timeout=5,
        verify=str(ca_file),
    )
    assert response.status_code == 200, response.text


PAYLOAD = {
    "storeId": SIMULATOR_STORE_ID,
    "webCheckoutDetails": {
        "checkoutResultReturnUrl": "https://shop.example/checkout/return",
        "checkoutMode": "ProcessOrder",
    },
    "paymentDetails": {
        "paymentIntent": "Authorize",
        "chargeAmount": {"amount": "14.00", "currencyCode": "USD"},
    },
}
AMOUNT = {"chargeAmount": {"amount": "14.00", "currencyCode": "USD"}}


@pytest.mark.parametrize("algorithm", [None, "AMZN-PAY-RSASSA-PSS-V2"], ids=["default", "v2"])
@pytest.mark.parametrize("key_id", [KEY_ID, PLAIN_KEY_ID], ids=["prefixed-key", "plain-key"])
def test_node_sdk_calls_are_accepted_and_tampering_is_refused(
    tls_server: ServerHandle,
    private_key: rsa.RSAPrivateKey,
    tls_files: tuple[Path, Path],
    algorithm: str | None,
    key_id: str,
) -> None:
    ca_file = tls_files[0]
    created = run_driver(
        tls_server,
        private_key,
        ca_file,
        [
            {
                "op": "createCheckoutSession",
                "payload": PAYLOAD,
                "headers": {"x-amz-pay-idempotency-key": "nodeinterop1"},
            }
        ],
        algorithm=algorithm,
        key_id=key_id,
    )
    assert created[0]["status"] == 201, created
    session_id = created[0]["data"]["checkoutSessionId"]
    play_buyer(tls_server, session_id, ca_file)

    results = run_driver(
        tls_server,
        private_key,
        ca_file,
        [
            {"op": "getCheckoutSession", "id": session_id},
            {
                "op": "tampered",
                "method": "POST",
                "urlFragment": f"checkoutSessions/{session_id}/complete",
                "payload": AMOUNT,
                "sentPayload": {"chargeAmount": {"amount": "1.00", "currencyCode": "USD"}},
            },
            {
                "op": "tampered",  # the same helper with an unchanged body is accepted
                "method": "GET",
                "urlFragment": f"checkoutSessions/{session_id}",
                "payload": None,
                "sentPayload": None,
            },
            {"op": "completeCheckoutSession", "id": session_id, "payload": AMOUNT},
            {"op": "completeCheckoutSession", "id": session_id, "payload": AMOUNT},
        ],
        algorithm=algorithm,
        key_id=key_id,
    )
    got, tampered, honest, completed, again = results
    assert got["status"] == 200, got
    assert got["data"]["checkoutSessionId"] == session_id
    assert got["data"]["statusDetails"]["state"] == "Open"
    assert tampered["status"] == 403, tampered
    assert tampered["data"]["reasonCode"] == "InvalidRequestSignature"
    assert honest["status"] == 200, honest  # so the 403 above is due to the body alone
    assert completed["status"] == 200, completed
    assert completed["data"]["statusDetails"]["state"] == "Completed"
    assert completed["data"]["chargeId"]
    assert again["status"] == 422
    assert again["data"]["reasonCode"] == "InvalidCheckoutSessionStatus"

    log = requests.get(
        f"{tls_server.base_url}/_simulator/requests", timeout=5, verify=str(ca_file)
    ).json()
    assert [e["status"] for e in log if e["operation"] == "CompleteCheckoutSession"] == [
        403,
        200,
        422,
    ]


def test_node_sdk_button_signature_opens_the_hosted_page(
    tls_server: ServerHandle, private_key: rsa.RSAPrivateKey, tls_files: tuple[Path, Path]
) -> None:
    payload_json = json.dumps(PAYLOAD)
    (signed,) = run_driver(
        tls_server,
        private_key,
        tls_files[0],
        [{"op": "generateButtonSignature", "payload": payload_json}],
        algorithm="AMZN-PAY-RSASSA-PSS-V2",
    )
    response = requests.post(
        f"{tls_server.base_url}/checkout/start",
        data={
            "payloadJSON": payload_json,
            "signature": signed["data"],
            "publicKeyId": KEY_ID,
            "algorithm": "AMZN-PAY-RSASSA-PSS-V2",
        },
        allow_redirects=False,
        timeout=5,
        verify=str(tls_files[0]),
    )
    assert response.status_code == 303, response.text
    assert response.headers["Location"].startswith("/hosted/")
