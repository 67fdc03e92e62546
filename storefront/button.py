"""The Amazon Pay button: the signed Create Checkout Session payload and the renderButton config.

The config object is what `static/js/amazon-pay-button.js` passes verbatim to
`amazon.Pay.renderButton` (docs/amazon-pay-api.md section 3). `payloadJSON` is signed as the exact
string that goes into the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from amazonpay.client import AmazonPayClient
from amazonpay.models import Price
from storefront.db import PendingCheckout
from storefront.states import CheckoutKind

__all__ = ["ButtonSettings", "PaymentIntent", "button_config"]

STORE_NAME = "Flask Coffee Demo"  # merchantStoreName: at most 50 characters (section 4)


class PaymentIntent(StrEnum):
    """AMAZON_PAY_PAYMENT_INTENT (docs/contract.md): charge at once, or authorize for staff to
    capture later (docs/amazon-pay-api.md section 5.1: an authorization lasts 30 days)."""

    AUTHORIZE_WITH_CAPTURE = "AuthorizeWithCapture"
    AUTHORIZE = "Authorize"

    @property
    def capture_now(self) -> bool:
        """Create Charge's `captureNow` for the same choice (saved-wallet charges, section 6)."""
        return self is PaymentIntent.AUTHORIZE_WITH_CAPTURE


@dataclass(frozen=True)
class ButtonSettings:
    merchant_id: str
    store_id: str
    ledger_currency: str
    sandbox: bool
    checkout_language: str = "en_US"
    payment_intent: PaymentIntent = PaymentIntent.AUTHORIZE_WITH_CAPTURE


def checkout_payload(
    settings: ButtonSettings, pending: PendingCheckout, return_url: str
) -> dict[str, Any]:
    """The Create Checkout Session body for this pending checkout (sections 3 and 6)."""
    payload: dict[str, Any] = {
        "storeId": settings.store_id,
        "webCheckoutDetails": {
            "checkoutResultReturnUrl": return_url,
            "checkoutMode": "ProcessOrder",
        },
    }
    if pending.kind == CheckoutKind.WALLET_SETUP:
        payload["chargePermissionType"] = "PaymentMethodOnFile"
        payload["paymentMethodOnFileMetadata"] = {"setupOnly": True}
        payload["paymentDetails"] = {"paymentIntent": "Confirm"}
    else:
        assert pending.amount is not None
        payload["paymentDetails"] = {
            "paymentIntent": settings.payment_intent.value,
            "canHandlePendingAuthorization": True,
            "chargeAmount": Price.of(pending.amount, pending.currency).to_json(),
        }
    payload["merchantMetadata"] = {
        "merchantReferenceId": pending.reference,
        "merchantStoreName": STORE_NAME,
    }
    return payload


def button_config(
    client: AmazonPayClient,
    settings: ButtonSettings,
    pending: PendingCheckout,
    return_url: str,
) -> dict[str, Any]:
    """The exact object for `amazon.Pay.renderButton('#AmazonPayButton', config)`."""
    payload_json = json.dumps(
        checkout_payload(settings, pending, return_url), separators=(",", ":"), ensure_ascii=True
    )
    config: dict[str, Any] = {
        "merchantId": settings.merchant_id,
        "publicKeyId": client.public_key_id,
        "ledgerCurrency": settings.ledger_currency,
        "checkoutLanguage": settings.checkout_language,
        "productType": "PayOnly",
        "placement": "Other" if pending.kind == CheckoutKind.WALLET_SETUP else "Checkout",
        "buttonColor": "Gold",
        "sandbox": settings.sandbox,
        "createCheckoutSessionConfig": {
            "payloadJSON": payload_json,
            "signature": client.sign_button_payload(payload_json),
            "publicKeyId": client.public_key_id,
            "algorithm": client.algorithm.value,
        },
    }
    if pending.kind != CheckoutKind.WALLET_SETUP and pending.amount is not None:
        config["estimatedOrderAmount"] = {
            "amount": f"{pending.amount.quantize(Decimal('0.01'))}",
            "currencyCode": pending.currency,
        }
    return config
