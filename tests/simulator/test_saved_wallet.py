"""A saved wallet's Charge Permission at Amazon (docs sections 4 and 6): the payment method it
shows, the NonChargeable and Closed reasons, what the buyer does to it, and the hosted
"update your payment method" page."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.simulator.conftest import Api, create_charge, saved_wallet

NON_CHARGEABLE = [
    "PaymentMethodInvalid",
    "PaymentMethodDeleted",
    "BillingAddressDeleted",
    "PaymentMethodExpired",
    "PaymentMethodNotAllowed",
    "PaymentMethodNotSet",
    "MFAFailed",
]
CLOSED = ["MerchantClosed", "BuyerClosed", "AmazonClosed", "Expired"]


def permission(api: Api, permission_id: str) -> dict[str, Any]:
    response = api.call("GET", f"/chargePermissions/{permission_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def status(api: Api, permission_id: str) -> tuple[str, list[str] | None]:
    details = permission(api, permission_id)["statusDetails"]
    reasons = details["reasons"]
    return details["state"], None if reasons is None else [r["reasonCode"] for r in reasons]


def buyer(api: Api, permission_id: str, action: str, **extra: Any) -> requests.Response:
    return api.control(f"charge-permissions/{permission_id}/buyer", {"action": action, **extra})


@pytest.mark.parametrize(("outcome", "card"), [("success", "1111"), ("pending", "0701")])
def test_the_wallet_names_the_card_like_amazon(api: Api, outcome: str, card: str) -> None:
    permission_id = saved_wallet(api, outcome)
    got = permission(api, permission_id)
    assert got["chargePermissionType"] == "PaymentMethodOnFile"
    assert got["paymentPreferences"] == [{"paymentDescriptor": f"Visa ****{card}"}]
    assert status(api, permission_id) == ("Chargeable", None)


@pytest.mark.parametrize(
    ("actions", "state", "reasons"),
    [
        (["expire_card"], "NonChargeable", ["PaymentMethodExpired"]),
        (["invalidate_card"], "NonChargeable", ["PaymentMethodInvalid"]),
        (["delete_card"], "NonChargeable", ["PaymentMethodDeleted"]),
        (["delete_billing_address"], "NonChargeable", ["BillingAddressDeleted"]),
        (
            ["expire_card", "delete_billing_address", "expire_card"],
            "NonChargeable",
            ["PaymentMethodExpired", "BillingAddressDeleted"],
        ),
        (["expire_card", "fix_card"], "Chargeable", None),
        (["fix_card"], "Chargeable", None),
        (["close"], "Closed", ["BuyerClosed"]),
        (["invalidate_card", "close"], "Closed", ["BuyerClosed"]),
    ],
    ids=lambda value: "+".join(value) if isinstance(value, list) else None,
)
def test_buyer_actions_move_the_permission(
    api: Api, wallet: str, actions: list[str], state: str, reasons: list[str] | None
) -> None:
    for action in actions:
        response = buyer(api, wallet, action)
        assert response.status_code == 200, response.text
    assert status(api, wallet) == (state, reasons)
    charge = create_charge(api, wallet, key="after-" + "-".join(actions)[:20])
    if state == "Chargeable":
        assert charge.status_code == 201, charge.text
    else:
        assert (charge.status_code, charge.json()["reasonCode"]) == (
            422,
            "InvalidChargePermissionStatus",
        )


def test_fixing_with_a_new_card_changes_the_descriptor(api: Api, wallet: str) -> None:
    buyer(api, wallet, "expire_card")
    assert buyer(api, wallet, "fix_card", card="4444").status_code == 200
    got = permission(api, wallet)
    assert got["paymentPreferences"] == [{"paymentDescriptor": "Visa ****4444"}]
    assert got["statusDetails"]["state"] == "Chargeable"


@pytest.mark.parametrize(
    ("state", "codes"),
    [("NonChargeable", [code]) for code in NON_CHARGEABLE]
    + [("Closed", [code]) for code in CLOSED]
    + [("NonChargeable", ["PaymentMethodExpired", "MFAFailed"])],
    ids=lambda value: "+".join(value) if isinstance(value, list) else value,
)
def test_every_reason_code_shows_in_status_details(
    api: Api, wallet: str, state: str, codes: list[str]
) -> None:
    response = api.control(
        f"charge-permissions/{wallet}/state", {"state": state, "reason_codes": codes}
    )
    assert response.status_code == 200, response.text
    details = permission(api, wallet)["statusDetails"]
    assert details["state"] == state
    assert [r["reasonCode"] for r in details["reasons"]] == codes
    assert all(r["reasonDescription"] for r in details["reasons"])
    assert re.match(r"^\d{8}T\d{6}Z$", details["lastUpdatedTimestamp"])
    charge = create_charge(api, wallet, key="refused")
    assert (charge.status_code, charge.json()["reasonCode"]) == (
        422,
        "InvalidChargePermissionStatus",
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("state", {"state": "Frozen"}),
        ("state", {"state": "Closed", "reason_codes": ["PaymentMethodExpired"]}),
        ("state", {"state": "NonChargeable", "reason_code": "BuyerClosed"}),
        ("state", {"state": "NonChargeable", "reason_codes": "MFAFailed"}),
        ("buyer", {"action": "steal"}),
        ("buyer", {"action": "fix_card", "card": "12"}),
    ],
)
def test_bad_control_calls_are_refused(
    api: Api, wallet: str, path: str, body: dict[str, Any]
) -> None:
    response = api.control(f"charge-permissions/{wallet}/{path}", body)
    assert (response.status_code, response.json()["reasonCode"]) == (400, "InvalidParameterValue")
    assert status(api, wallet) == ("Chargeable", None)


def test_closed_is_final(api: Api, wallet: str) -> None:
    assert buyer(api, wallet, "close").status_code == 200
    for response in (
        buyer(api, wallet, "fix_card"),
        api.control(f"charge-permissions/{wallet}/state", {"state": "Chargeable"}),
    ):
        assert (response.status_code, response.json()["reasonCode"]) == (
            422,
            "InvalidChargePermissionStatus",
        )
    assert status(api, wallet) == ("Closed", ["BuyerClosed"])


def test_unknown_permissions_are_404(api: Api) -> None:
    response = api.control("charge-permissions/S01-0000000-0000000/buyer", {"action": "close"})
    assert (response.status_code, response.json()["reasonCode"]) == (404, "ResourceNotFound")


# -- the hosted "update your payment method" page ---------------------------------------------


def update_page(api: Api, permission_id: str) -> requests.Response:
    return api.http.get(f"{api.base_url}/jr/your-account/ba/{permission_id}")


def csrf_token(page: requests.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found[1]


def test_the_update_page_shows_the_wallet_and_its_reasons(api: Api, wallet: str) -> None:
    buyer(api, wallet, "expire_card")
    page = update_page(api, wallet)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert f'data-charge-permission-id="{wallet}"' in page.text
    assert "Visa ****1111" in page.text
    assert 'data-testid="wallet-state">NonChargeable<' in page.text
    assert 'data-reason-code="PaymentMethodExpired"' in page.text
    assert 'id="update-payment-method"' in page.text
    assert "<script" not in page.text.lower()
    assert re.search(r"\son[a-z]+=", page.text) is None  # no inline event handlers
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


def test_the_update_button_fixes_the_card(api: Api, wallet: str) -> None:
    buyer(api, wallet, "invalidate_card")
    page = update_page(api, wallet)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action is not None
    assert action[1] == f"/jr/your-account/ba/{wallet}"
    response = api.http.post(
        api.base_url + action[1], data={"csrf_token": csrf_token(page)}, allow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert response.headers["Location"].endswith(f"/jr/your-account/ba/{wallet}?updated=1")
    assert status(api, wallet) == ("Chargeable", None)
    after = api.http.get(api.base_url + response.headers["Location"])
    assert 'data-testid="wallet-updated"' in after.text
    assert 'data-testid="wallet-state">Chargeable<' in after.text
    log = api.http.get(api.base_url + "/_simulator/requests").json()
    updates = [e for e in log if e["operation"] == "BuyerUpdatedPaymentMethod"]
    assert [(e["charge_permission_id"], e["status"]) for e in updates] == [(wallet, 303)]


@pytest.mark.parametrize(
    "attack",
    ["no-token", "wrong-token", "no-cookie", "cross-site"],
)
def test_the_update_form_is_csrf_safe(api: Api, wallet: str, attack: str) -> None:
    buyer(api, wallet, "expire_card")
    token = csrf_token(update_page(api, wallet))
    data = {} if attack == "no-token" else {"csrf_token": token}
    if attack == "wrong-token":
        data["csrf_token"] = token[::-1]
    headers = {"Sec-Fetch-Site": "cross-site"} if attack == "cross-site" else {}
    http = requests.Session() if attack == "no-cookie" else api.http
    url = f"{api.base_url}/jr/your-account/ba/{wallet}"
    response = http.post(url, data=data, headers=headers, allow_redirects=False)
    assert response.status_code == 403
    assert 'data-testid="simulator-error"' in response.text
    assert status(api, wallet) == ("NonChargeable", ["PaymentMethodExpired"])


def test_a_closed_or_unknown_wallet_cannot_be_updated(api: Api, wallet: str) -> None:
    token = csrf_token(update_page(api, wallet))
    buyer(api, wallet, "close")
    page = update_page(api, wallet)
    assert 'data-testid="wallet-closed"' in page.text
    assert "update-payment-method" not in page.text
    url = f"{api.base_url}/jr/your-account/ba/{wallet}"
    refused = api.http.post(url, data={"csrf_token": token}, allow_redirects=False)
    assert refused.status_code == 422
    assert update_page(api, "S01-0000000-0000000").status_code == 404
