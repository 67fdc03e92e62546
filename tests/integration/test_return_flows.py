"""Both Amazon Pay flows end to end against the real simulator: button, hosted page, return URL."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from amazonpay import signing
from storefront.states import ClaimState
from tests.integration.conftest import (
    PAYMENT_FAILED,
    WALLET_FAILED,
    Buyer,
    SimulatorHarness,
    button_config,
)
from tests.support.servers import KeyPair

RESULT_URL = re.compile(r"^/checkout/result/[A-Za-z0-9_-]{22}$")
PERMISSION_ID = re.compile(r"[SPB]01-\d{7}-\d{7}")


def completes(simulator: SimulatorHarness) -> list[dict[str, Any]]:
    return simulator.operations("CompleteCheckoutSession")


def test_wallet_setup_saves_amazon_pay_and_lists_it(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    trip = buyer.pay("/wallet", "1111")

    assert trip.response.status_code == 303
    assert RESULT_URL.match(trip.response.headers["Location"])
    page = buyer.follow(trip.response)
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-testid="success"' in text
    assert "Amazon Pay is saved as your payment method" in text
    permission = PERMISSION_ID.search(text)
    assert permission is not None

    wallet = buyer.client.get("/wallet").get_data(as_text=True)
    assert 'data-testid="saved-method"' in wallet
    assert permission.group(0) in wallet
    complete = completes(simulator)
    assert len(complete) == 1
    assert complete[0]["status"] == 200


def test_refreshing_success_and_replaying_the_return_never_call_amazon_again(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    trip = buyer.pay("/wallet", "1111")
    result = trip.response.headers["Location"]
    calls = len(simulator.requests_log())

    for _ in range(3):
        assert buyer.client.get(result).status_code == 200
        again = buyer.client.get(trip.return_url)
        assert (again.status_code, again.headers["Location"]) == (303, result)

    assert len(simulator.requests_log()) == calls


def test_one_time_checkout_charges_the_cart_total(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    buyer.add_to_cart("mug")
    buyer.add_to_cart("coffee-beans")
    buyer.add_to_cart("mug")

    trip = buyer.pay("/checkout", "1111")

    payment = trip.payload["paymentDetails"]
    assert payment["chargeAmount"] == {"amount": "33.98", "currencyCode": "USD"}
    assert trip.config["estimatedOrderAmount"] == {"amount": "33.98", "currencyCode": "USD"}
    assert trip.response.status_code == 303
    page = buyer.follow(trip.response).get_data(as_text=True)
    assert "Thank you — your order is confirmed" in page
    assert "USD 33.98" in page
    assert PERMISSION_ID.search(page)
    assert len(completes(simulator)) == 1
    # Paid: the cart starts empty again.
    assert 'data-testid="empty-cart"' in buyer.client.get("/checkout").get_data(as_text=True)


@pytest.mark.parametrize(
    ("page", "method", "target", "message"),
    [
        ("/wallet", "3064", "/wallet", WALLET_FAILED),
        ("/wallet", "3434", "/wallet", WALLET_FAILED),
        ("/wallet", "cancel", "/wallet", WALLET_FAILED),
        ("/checkout", "3064", "/checkout", PAYMENT_FAILED),
        ("/checkout", "3434", "/checkout", PAYMENT_FAILED),
        ("/checkout", "cancel", "/checkout", PAYMENT_FAILED),
    ],
)
def test_canceled_or_declined_redirects_back_with_the_message(
    *,
    buyer: Buyer,
    simulator: SimulatorHarness,
    page: str,
    method: str,
    target: str,
    message: str,
) -> None:
    buyer.add_to_cart()
    trip = buyer.pay(page, method)

    assert trip.response.status_code in (302, 303)
    assert trip.response.headers["Location"].split("?")[0] == target
    shown = buyer.follow(trip.response).get_data(as_text=True)
    assert message in shown
    assert 'data-testid="flash-error"' in shown
    assert completes(simulator) == []


@pytest.mark.parametrize("outcome", ["AmazonRejected", "Declined", "BuyerCanceled"])
def test_outcomes_set_through_the_control_api_fail_cleanly(
    buyer: Buyer, simulator: SimulatorHarness, outcome: str
) -> None:
    session_id, config = buyer.press_button("/wallet")
    simulator.http.post(
        f"{simulator.base_url}/_simulator/sessions/{session_id}/outcome",
        json={"outcome": outcome},
        timeout=5,
    ).raise_for_status()
    payload = button_config_payload(config)
    return_url = payload["webCheckoutDetails"]["checkoutResultReturnUrl"]

    response = buyer.client.get(f"{return_url}&amazonCheckoutSessionId={session_id}")

    assert (response.status_code, response.headers["Location"]) == (303, "/wallet")


def test_session_expired_at_amazon_is_a_failure(buyer: Buyer, simulator: SimulatorHarness) -> None:
    session_id, _ = buyer.press_button("/wallet")
    return_url = buyer.choose(session_id, "1111")
    simulator.advance_clock(25 * 3600)

    response = buyer.client.get(return_url)

    assert response.headers["Location"] == "/wallet"
    assert completes(simulator) == []


def test_lost_cookie_still_completes_from_the_return_url(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    session_id, _ = buyer.press_button("/wallet")
    return_url = buyer.choose(session_id, "1111")

    stranger = app.test_client()  # the same person, but the browser dropped the cookie
    response = stranger.get(return_url)

    assert response.status_code == 303
    assert "Amazon Pay is saved" in stranger.get(response.headers["Location"]).get_data(
        as_text=True
    )


# -- outcome not known yet -----------------------------------------------------------------------


def test_pending_authorization_shows_the_confirming_page_then_success(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    buyer.add_to_cart("grinder")
    trip = buyer.pay("/checkout", "0701")

    assert trip.response.status_code == 200
    text = trip.response.get_data(as_text=True)
    assert 'data-testid="pending"' in text
    assert '<meta http-equiv="refresh" content="5">' in text
    assert "not successful" not in text
    assert trip.response.headers["Cache-Control"] == "no-store"
    assert [c["status"] for c in completes(simulator)] == [202]

    # Still authorizing: the refresh stays on the confirming page without completing again.
    assert 'data-testid="pending"' in buyer.client.get(trip.return_url).get_data(as_text=True)
    simulator.advance_clock(60)
    refreshed = buyer.client.get(trip.return_url)

    assert refreshed.status_code == 303
    assert "your order is confirmed" in buyer.follow(refreshed).get_data(as_text=True)
    assert len(completes(simulator)) == 1


def test_amazon_down_during_complete_is_pending_then_reconciled(
    buyer: Buyer, simulator: SimulatorHarness
) -> None:
    session_id, _ = buyer.press_button("/wallet")
    return_url = buyer.choose(session_id, "1111")
    simulator.fault("CompleteCheckoutSession", kind="status", status=503, count=20)

    first = buyer.client.get(return_url)

    assert first.status_code == 200
    assert 'data-testid="pending"' in first.get_data(as_text=True)
    simulator.http.post(f"{simulator.base_url}/_simulator/reset", json={}, timeout=5)

    second = buyer.client.get(return_url)

    assert second.status_code == 303
    assert "Amazon Pay is saved" in buyer.follow(second).get_data(as_text=True)


def test_dropped_complete_response_never_shows_failure(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    buyer.add_to_cart("mug")
    session_id, _ = buyer.press_button("/checkout")
    return_url = buyer.choose(session_id, "1111")
    simulator.fault("CompleteCheckoutSession", kind="drop", count=1)

    first = buyer.client.get(return_url)

    # Either the client's retry replayed the saved answer, or the page waits for confirmation.
    if first.status_code == 200:
        assert 'data-testid="pending"' in first.get_data(as_text=True)
        first = buyer.client.get(return_url)
    assert first.status_code == 303
    assert RESULT_URL.match(first.headers["Location"])
    claim = app.extensions["shop"].store.ledger.get(session_id)
    assert claim.status == ClaimState.COMPLETED


# -- someone else's session id ------------------------------------------------------------------


def test_hijacked_session_id_is_refused_and_the_owner_still_completes(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    session_id, _ = buyer.press_button("/wallet")
    victim_return = buyer.choose(session_id, "1111")

    attacker = app.test_client()
    own = button_config_payload(button_config(attacker.get("/wallet")))
    own_return = own["webCheckoutDetails"]["checkoutResultReturnUrl"]
    hijack = attacker.get(f"{own_return}&amazonCheckoutSessionId={session_id}")

    assert (hijack.status_code, hijack.headers["Location"]) == (303, "/wallet")
    assert completes(simulator) == []
    assert 'data-testid="saved-method"' not in attacker.get("/wallet").get_data(as_text=True)

    owner = buyer.client.get(victim_return)
    assert owner.status_code == 303
    assert RESULT_URL.match(owner.headers["Location"])


def test_replaying_a_completed_session_on_another_checkout_calls_amazon_no_more(
    app: Flask, buyer: Buyer, simulator: SimulatorHarness
) -> None:
    trip = buyer.pay("/wallet", "1111")
    assert trip.response.status_code == 303
    calls = len(simulator.requests_log())

    attacker = app.test_client()
    own = button_config_payload(button_config(attacker.get("/wallet")))
    replay = attacker.get(
        own["webCheckoutDetails"]["checkoutResultReturnUrl"]
        + f"&amazonCheckoutSessionId={trip.checkout_session_id}"
    )

    assert replay.headers["Location"] == "/wallet"
    assert len(simulator.requests_log()) == calls


# -- the button ---------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/wallet", "/checkout"])
def test_button_config_is_complete_and_signed(
    buyer: Buyer, client: FlaskClient, key_pair: KeyPair, page: str
) -> None:
    buyer.add_to_cart("pour-over")
    response = client.get(page)
    config = button_config(response)

    for key in (
        "merchantId",
        "publicKeyId",
        "ledgerCurrency",
        "checkoutLanguage",
        "productType",
        "placement",
        "buttonColor",
        "sandbox",
        "createCheckoutSessionConfig",
    ):
        assert key in config
    session_config = config["createCheckoutSessionConfig"]
    assert session_config["publicKeyId"] == key_pair.key_id
    assert session_config["algorithm"] == "AMZN-PAY-RSASSA-PSS-V2"
    public_key = signing.load_public_key(key_pair.public_key_path.read_bytes())
    assert signing.verify_button_signature(
        public_key,
        session_config["payloadJSON"],
        session_config["signature"],
        "AMZN-PAY-RSASSA-PSS-V2",
    )
    payload = button_config_payload(config)
    web = payload["webCheckoutDetails"]
    assert web["checkoutMode"] == "ProcessOrder"
    assert web["checkoutResultReturnUrl"].startswith("http://localhost/checkout/return?ref=")
    reference = web["checkoutResultReturnUrl"].split("ref=")[1]
    assert payload["merchantMetadata"]["merchantReferenceId"] == reference
    if page == "/wallet":
        assert payload["chargePermissionType"] == "PaymentMethodOnFile"
        assert payload["paymentMethodOnFileMetadata"] == {"setupOnly": True}
        assert payload["paymentDetails"] == {"paymentIntent": "Confirm"}
    else:
        assert payload["paymentDetails"]["chargeAmount"] == {
            "amount": "24.50",
            "currencyCode": "USD",
        }
    # Views reuse the pending checkout instead of writing a row per page view.
    again = button_config(client.get(page))["createCheckoutSessionConfig"]
    assert again["payloadJSON"] == session_config["payloadJSON"]  # PSS signatures are salted


def test_button_config_is_escaped_json_in_a_data_script(client: FlaskClient) -> None:
    text = client.get("/wallet").get_data(as_text=True)
    script = text.split('id="amazon-pay-button-config">', 1)[1].split("</script>", 1)[0]
    assert "<" not in script
    assert ">" not in script
    assert "&" not in script  # the return URL's & is \u0026 inside the JSON


def test_checkout_with_an_empty_cart_shows_no_button(client: FlaskClient) -> None:
    text = client.get("/checkout").get_data(as_text=True)
    assert 'data-testid="empty-cart"' in text
    assert "amazon-pay-button-config" not in text
    assert 'id="AmazonPayButton"' not in text


def button_config_payload(config: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(config["createCheckoutSessionConfig"]["payloadJSON"])
    return payload
