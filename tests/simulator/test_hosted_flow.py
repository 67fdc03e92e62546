"""The buyer's side over plain HTTP: checkout.js, the button's form POST with its static
signature (docs section 3), the hosted page and the redirect back to checkoutResultReturnUrl."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from amazonpay import signing
from amazonpay.simulator import append_session_id
from tests.simulator.conftest import PLAIN_KEY_ID, SANDBOX_KEY_ID, Api, session_payload

HARNESS = Path(__file__).with_name("checkout_js_harness.js")


def run_checkout_js(script: str, src: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """Run checkout.js in Node against a fake DOM; Node is a required test dependency."""
    node = shutil.which("node")
    assert node is not None, "node is required for the checkout.js test"
    result = subprocess.run(
        [node, str(HARNESS)],
        input=json.dumps({"script": script, "src": src, "config": config}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def button_form(
    api: Api,
    payload: dict[str, Any] | None = None,
    algorithm: signing.Algorithm | None = signing.Algorithm.PSS_V2,
    **overrides: str,
) -> dict[str, str]:
    payload_json = json.dumps(payload or session_payload(), separators=(",", ":"))
    form = {
        "payloadJSON": payload_json,
        "signature": signing.sign_button_payload(
            api.keys.private, payload_json, algorithm or signing.Algorithm.PSS
        ),
        "publicKeyId": SANDBOX_KEY_ID,
    }
    if algorithm is not None:
        form["algorithm"] = algorithm.value
    form.update(overrides)
    return form


def start(api: Api, form: dict[str, str]) -> requests.Response:
    return api.http.post(api.base_url + "/checkout/start", data=form, allow_redirects=False)


def hosted_page_for(api: Api, form: dict[str, str]) -> tuple[str, str]:
    response = start(api, form)
    assert response.status_code == 303, response.text
    page_url = api.base_url + response.headers["Location"]
    session_id = response.headers["Location"].rsplit("/", 1)[1]
    return page_url, session_id


def choose(api: Api, page_url: str, method: str) -> requests.Response:
    page = api.http.get(page_url)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None, page.text
    return api.http.post(api.base_url + action[1], data={"method": method}, allow_redirects=False)


def test_checkout_js_is_csp_friendly_javascript(api: Api) -> None:
    response = api.http.get(api.base_url + "/checkout.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/javascript")
    script = response.text
    assert "renderButton" in script
    assert "'amazon-pay-button'" in script
    assert "Amazon Pay (simulated)" in script
    for forbidden in (
        "eval(",
        "new Function",
        "innerHTML",
        "<style",
        "onclick=",
        "fetch(",
        "setAttribute('style",
    ):
        assert forbidden not in script, forbidden
    assert api.base_url in script  # fallback origin when document.currentScript is unavailable


@pytest.mark.parametrize("algorithm", [signing.Algorithm.PSS_V2, signing.Algorithm.PSS, None])
def test_button_to_hosted_page_to_return_url(api: Api, algorithm: signing.Algorithm | None) -> None:
    page_url, session_id = hosted_page_for(api, button_form(api, algorithm=algorithm))
    page = api.http.get(page_url)
    assert page.status_code == 200
    assert "Amazon Pay — simulated" in page.text
    assert "not Amazon" in page.text
    for testid in (
        "pay-method-1111",
        "pay-method-3064",
        "pay-method-3434",
        "pay-method-0701",
        "pay-method-4354",
        "pay-cancel",
    ):
        assert f'data-testid="{testid}"' in page.text
    assert "14.00 USD" in page.text
    assert "script" not in page.text.lower()  # plain HTML + CSS
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]

    redirect = choose(api, page_url, "1111")
    assert redirect.status_code == 303
    assert redirect.headers["Location"] == (
        f"https://shop.example/checkout/return?amazonCheckoutSessionId={session_id}"
    )
    session = api.call("GET", f"/checkoutSessions/{session_id}").json()
    assert session["statusDetails"]["state"] == "Open"
    assert session["buyer"] is not None
    assert session["billingAddress"] is not None
    assert session["constraints"] == []
    done = api.call(
        "POST",
        f"/checkoutSessions/{session_id}/complete",
        {"chargeAmount": {"amount": "14.00", "currencyCode": "USD"}},
    )
    assert done.status_code == 200


@pytest.mark.parametrize(
    ("method", "complete_status", "state", "reason"),
    [
        ("3064", 422, "Canceled", "BuyerCanceled"),
        ("3434", 422, "Canceled", "Declined"),
        ("cancel", 422, "Canceled", "BuyerCanceled"),
        ("0701", 202, "Completed", None),
    ],
)
def test_each_test_payment_method(
    api: Api, method: str, complete_status: int, state: str, reason: str | None
) -> None:
    page_url, session_id = hosted_page_for(api, button_form(api))
    assert choose(api, page_url, method).status_code == 303
    response = api.call(
        "POST",
        f"/checkoutSessions/{session_id}/complete",
        {"chargeAmount": {"amount": "14.00", "currencyCode": "USD"}},
    )
    assert response.status_code == complete_status, response.text
    details = api.call("GET", f"/checkoutSessions/{session_id}").json()["statusDetails"]
    assert (details["state"], details["reasonCode"]) == (state, reason)


@pytest.mark.parametrize(
    ("return_url", "expected"),
    [
        ("https://shop.example/return", "https://shop.example/return?amazonCheckoutSessionId=ID"),
        (
            "https://shop.example/return?a=1",
            "https://shop.example/return?a=1&amazonCheckoutSessionId=ID",
        ),
        (
            "https://shop.example/r?a=1&b=x%20y",
            "https://shop.example/r?a=1&b=x%20y&amazonCheckoutSessionId=ID",
        ),
        (
            "https://shop.example/return#top",
            "https://shop.example/return?amazonCheckoutSessionId=ID",
        ),
        (
            "http://127.0.0.1:5000/checkout/return?",
            "http://127.0.0.1:5000/checkout/return?amazonCheckoutSessionId=ID",
        ),
    ],
)
def test_session_id_is_appended_with_question_mark_or_ampersand(
    return_url: str, expected: str
) -> None:
    assert append_session_id(return_url, "ID") == expected


def test_return_url_with_a_query_over_http(api: Api) -> None:
    payload = session_payload(return_url="https://shop.example/checkout/return?order=7")
    page_url, session_id = hosted_page_for(api, button_form(api, payload))
    location = choose(api, page_url, "1111").headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query == {"order": ["7"], "amazonCheckoutSessionId": [session_id]}


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"signature": "AAAA"}, "Invalid button signature"),
        ({"payloadJSON_suffix": " "}, "Invalid button signature"),  # signed text is byte-exact
        ({"algorithm": signing.Algorithm.PSS.value}, "Invalid button signature"),  # salt mismatch
        ({"publicKeyId": "SANDBOX-NOBODY"}, "Unknown public key"),
        ({"algorithm": "HMAC"}, "Unknown algorithm"),
    ],
)
def test_bad_button_posts_get_an_error_page_and_no_session(
    api: Api, change: dict[str, str], text: str
) -> None:
    form = button_form(api)
    if "payloadJSON_suffix" in change:
        form["payloadJSON"] += change.pop("payloadJSON_suffix")
    form.update(change)
    response = start(api, form)
    assert response.status_code == 400
    assert text in response.text
    assert "Traceback" not in response.text
    log = api.http.get(api.base_url + "/_simulator/requests").json()
    assert [e["checkout_session_id"] for e in log] == [None]


@pytest.mark.parametrize(
    "payload",
    [
        {"storeId": "s", "webCheckoutDetails": {"checkoutMode": "ProcessOrder"}},
        {"storeId": "s", "webCheckoutDetails": {"checkoutResultReturnUrl": "https://x.example/"}},
    ],
)
def test_button_payload_needs_process_order_and_a_result_url(
    api: Api, payload: dict[str, Any]
) -> None:
    assert start(api, button_form(api, payload)).status_code == 400


def test_unprefixed_key_takes_the_environment_from_the_sandbox_flag(api: Api) -> None:
    form = button_form(api, publicKeyId=PLAIN_KEY_ID, sandbox="false")
    _, session_id = hosted_page_for(api, form)
    api.prefix, api.key_id = "/live/v2", PLAIN_KEY_ID
    assert api.call("GET", f"/checkoutSessions/{session_id}").json()["releaseEnvironment"] == "Live"


def test_a_finished_session_shows_its_state_instead_of_the_choices(api: Api) -> None:
    page_url, _ = hosted_page_for(api, button_form(api))
    choose(api, page_url, "3434")
    page = api.http.get(page_url)
    assert "Canceled" in page.text
    assert 'data-testid="pay-method-1111"' not in page.text
    again = api.http.post(page_url + "/choose", data={"method": "1111"}, allow_redirects=False)
    assert again.status_code == 422


def test_unknown_hosted_session_and_method(api: Api) -> None:
    assert api.http.get(api.base_url + "/hosted/nope").status_code == 404
    page_url, _ = hosted_page_for(api, button_form(api))
    response = api.http.post(page_url + "/choose", data={"method": "9999"}, allow_redirects=False)
    assert response.status_code == 400


def test_stylesheet_is_served_by_the_simulator(api: Api) -> None:
    page_url, _ = hosted_page_for(api, button_form(api))
    href = re.search(r'<link rel="stylesheet" href="([^"]+)"', api.http.get(page_url).text)
    assert href is not None
    assert href[1].startswith("/")
    css = api.http.get(api.base_url + href[1])
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")


@pytest.mark.parametrize("with_current_script", [True, False])
@pytest.mark.parametrize("algorithm", ["AMZN-PAY-RSASSA-PSS-V2", None])
def test_render_button_submits_a_top_level_form_to_the_simulator(
    api: Api, with_current_script: bool, algorithm: str | None
) -> None:
    script = api.http.get(api.base_url + "/checkout.js").text
    session_config: dict[str, Any] = {
        "payloadJSON": '{"storeId":"s"}',
        "signature": "c2lnbmF0dXJl",
        "publicKeyId": SANDBOX_KEY_ID,
    }
    if algorithm:
        session_config["algorithm"] = algorithm
    config = {
        "merchantId": "M1",
        "publicKeyId": SANDBOX_KEY_ID,
        "ledgerCurrency": "USD",
        "sandbox": True,
        "productType": "PayAndShip",
        "placement": "Cart",
        "buttonColor": "Gold",
        "createCheckoutSessionConfig": session_config,
    }
    src = api.base_url + "/checkout.js" if with_current_script else None
    result = run_checkout_js(script, src, config)
    button = result["button"]
    assert result["returnedElement"] is True
    assert (button["tag"], button["type"], button["text"]) == (
        "BUTTON",
        "button",
        "Amazon Pay (simulated)",
    )
    assert button["attributes"]["data-testid"] == "amazon-pay-button"
    assert button["id"] == "amazon-pay-button"
    assert button["style"]["backgroundColor"]
    form = result["form"]
    assert (form["method"], form["action"]) == ("POST", api.base_url + "/checkout/start")
    assert form["inBody"] is True
    assert set(form["types"]) == {"hidden"}
    assert form["fields"]["payloadJSON"] == '{"storeId":"s"}'
    assert form["fields"]["signature"] == "c2lnbmF0dXJl"
    assert form["fields"]["publicKeyId"] == SANDBOX_KEY_ID
    assert form["fields"]["algorithm"] == (algorithm or "AMZN-PAY-RSASSA-PSS")
    assert form["fields"]["sandbox"] == "true"
