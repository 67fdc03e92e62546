"""The project's AmazonPayClient against the simulator over real HTTP: the whole lifecycle,
error classes, pending authorization, and retries across dropped connections and 503s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from amazonpay import errors, signing
from amazonpay.client import AmazonPayClient, RetryPolicy, idempotency_key_for
from amazonpay.models import Channel, ChargeInitiator, Price
from amazonpay.simulator import ServerHandle
from tests.simulator.conftest import PLAIN_KEY_ID, SANDBOX_KEY_ID, Keys, session_payload

USD_14 = Price.of("14.00", "USD")


def make_client(
    server: ServerHandle,
    keys: Keys,
    *,
    key_id: str = SANDBOX_KEY_ID,
    algorithm: signing.Algorithm = signing.Algorithm.PSS_V2,
    attempts: int = 3,
    sandbox: bool = True,
) -> AmazonPayClient:
    return AmazonPayClient(
        public_key_id=key_id,
        private_key=keys.private_pem(),
        endpoint=server.base_url,
        algorithm=algorithm,
        sandbox=sandbox,
        retry=RetryPolicy(max_attempts=attempts, base_delay=0, max_delay=0),
        sleep=lambda _seconds: None,
        read_timeout=5,
    )


@pytest.fixture
def client(server: ServerHandle, keys: Keys) -> Iterator[AmazonPayClient]:
    with make_client(server, keys) as built:
        yield built


def play_buyer(server: ServerHandle, session_id: str, outcome: str = "success") -> None:
    response = requests.post(
        f"{server.base_url}/_simulator/sessions/{session_id}/outcome",
        json={"outcome": outcome},
        timeout=5,
    )
    assert response.status_code == 200, response.text


def add_fault(server: ServerHandle, **fault: object) -> None:
    response = requests.post(f"{server.base_url}/_simulator/faults", json=fault, timeout=5)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("key_id", "algorithm", "sandbox"),
    [
        (SANDBOX_KEY_ID, signing.Algorithm.PSS_V2, True),
        (SANDBOX_KEY_ID, signing.Algorithm.PSS, True),
        (PLAIN_KEY_ID, signing.Algorithm.PSS_V2, True),
        (PLAIN_KEY_ID, signing.Algorithm.PSS, False),
    ],
)
def test_full_lifecycle(
    server: ServerHandle, keys: Keys, key_id: str, algorithm: signing.Algorithm, sandbox: bool
) -> None:
    with make_client(server, keys, key_id=key_id, algorithm=algorithm, sandbox=sandbox) as client:
        session = client.create_checkout_session(session_payload())
        assert session.state == "Open"
        play_buyer(server, session.checkout_session_id)
        result = client.complete_checkout_session(
            session.checkout_session_id,
            USD_14,
            idempotency_key=idempotency_key_for(session.checkout_session_id),
        )
        assert result.authorization_pending is False
        done = result.checkout_session
        assert done.state == "Completed"
        assert done.charge_permission_id is not None
        assert done.charge_id is not None
        assert client.get_charge_permission(done.charge_permission_id).state == "Chargeable"
        charge = client.capture_charge(
            done.charge_id, USD_14, idempotency_key=idempotency_key_for("capture-order-1")
        )
        assert charge.state == "Captured"
        refund = client.create_refund(
            done.charge_id,
            Price.of("5.00", "USD"),
            idempotency_key=idempotency_key_for("refund-order-1"),
        )
        assert refund.state == "RefundInitiated"
        assert client.get_refund(refund.refund_id).state == "RefundInitiated"
        second = client.create_charge(
            done.charge_permission_id,
            Price.of("1.00", "USD"),
            capture_now=False,
            can_handle_pending_authorization=True,
            charge_initiator=ChargeInitiator.MITU,
            channel=Channel.WEB,
            merchant_reference_id="order-2",
            idempotency_key=idempotency_key_for("charge-order-2"),
        )
        assert second.state == "Authorized"
        assert client.cancel_charge(second.charge_id, "test").state == "Canceled"
        closed = client.close_charge_permission(done.charge_permission_id, "done")
        assert closed.state == "Closed"


def test_errors_map_to_the_client_classes(server: ServerHandle, client: AmazonPayClient) -> None:
    session = client.create_checkout_session(session_payload())
    sid = session.checkout_session_id
    with pytest.raises(errors.ConflictError) as not_yet:
        client.complete_checkout_session(sid, USD_14)
    assert not_yet.value.reason_code == "InvalidCheckoutSessionStatus"
    play_buyer(server, sid)
    with pytest.raises(errors.ConflictError) as mismatch:
        client.complete_checkout_session(sid, Price.of("13.99", "USD"))
    assert (mismatch.value.status, mismatch.value.reason_code) == (409, "AmountMismatch")
    assert mismatch.value.request_id
    with pytest.raises(errors.NotFoundError):
        client.get_checkout_session("00000000-0000-0000-0000-000000000000")


def test_wrong_key_is_an_authentication_error(server: ServerHandle, keys: Keys) -> None:
    client = AmazonPayClient(
        public_key_id=SANDBOX_KEY_ID,
        private_key=keys.stranger,
        endpoint=server.base_url,
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(errors.AuthenticationError) as caught:
        client.get_checkout_session("00000000-0000-0000-0000-000000000000")
    assert caught.value.reason_code == "InvalidRequestSignature"


def test_canceled_session(server: ServerHandle, client: AmazonPayClient) -> None:
    sid = client.create_checkout_session(session_payload()).checkout_session_id
    play_buyer(server, sid, "Declined")
    with pytest.raises(errors.ConflictError) as caught:
        client.complete_checkout_session(sid, USD_14)
    assert caught.value.reason_code == "CheckoutSessionCanceled"
    assert client.get_checkout_session(sid).status_details.reason_code == "Declined"


def test_pending_authorization(server: ServerHandle, client: AmazonPayClient) -> None:
    sid = client.create_checkout_session(session_payload()).checkout_session_id
    play_buyer(server, sid, "pending")
    result = client.complete_checkout_session(sid, USD_14)
    assert result.authorization_pending is True
    assert result.checkout_session.charge_id is not None
    assert client.get_charge(result.checkout_session.charge_id).state == "AuthorizationInitiated"


def test_retry_after_a_dropped_complete_replays_the_first_answer(
    server: ServerHandle, client: AmazonPayClient
) -> None:
    sid = client.create_checkout_session(session_payload()).checkout_session_id
    play_buyer(server, sid)
    add_fault(server, operation="CompleteCheckoutSession", kind="drop")
    result = client.complete_checkout_session(sid, USD_14, idempotency_key=idempotency_key_for(sid))
    assert result.checkout_session.state == "Completed"
    log = requests.get(f"{server.base_url}/_simulator/requests", timeout=5).json()
    assert [e["fault"] for e in log if e["operation"] == "CompleteCheckoutSession"] == [
        "drop",
        "replay",
    ]


def test_drop_without_retries_is_a_connection_error_that_may_have_applied(
    server: ServerHandle, keys: Keys
) -> None:
    with make_client(server, keys, attempts=1) as client:
        sid = client.create_checkout_session(session_payload()).checkout_session_id
        play_buyer(server, sid)
        add_fault(server, operation="CompleteCheckoutSession", kind="drop")
        with pytest.raises(errors.APIConnectionError) as caught:
            client.complete_checkout_session(sid, USD_14)
        assert caught.value.may_have_been_applied is True
        assert client.get_checkout_session(sid).state == "Completed"


def test_retries_through_503_and_429(server: ServerHandle, client: AmazonPayClient) -> None:
    sid = client.create_checkout_session(session_payload()).checkout_session_id
    add_fault(server, operation="GetCheckoutSession", kind="status", status=503)
    add_fault(server, operation="GetCheckoutSession", kind="status", status=429, retry_after=0)
    assert client.get_checkout_session(sid).state == "Open"
    add_fault(server, operation="GetCheckoutSession", kind="status", status=503, count=5)
    with pytest.raises(errors.ServiceError):
        client.get_checkout_session(sid)


def test_setup_only_wallet(server: ServerHandle, client: AmazonPayClient) -> None:
    from tests.simulator.conftest import setup_only_payload

    session = client.create_checkout_session(setup_only_payload())
    play_buyer(server, session.checkout_session_id)
    result = client.complete_checkout_session(session.checkout_session_id)
    assert result.checkout_session.charge_permission_type == "PaymentMethodOnFile"
    assert result.checkout_session.charge_id is None
