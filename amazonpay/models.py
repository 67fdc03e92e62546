"""Typed, frozen views of Amazon Pay API objects: snake_case here, camelCase only at the JSON edge.

`from_json` is tolerant (unknown fields are ignored, missing ones become None) because Amazon adds
fields over time; the untouched JSON stays available as `raw` for logging and debugging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

JSON = Mapping[str, Any]


def _obj(data: JSON, key: str) -> JSON | None:
    value = data.get(key)
    return value if isinstance(value, Mapping) else None


def _str(data: JSON, key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _bool(data: JSON, key: str) -> bool | None:
    value = data.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


@dataclass(frozen=True)
class Price:
    """An amount and its ISO currency. Amazon sends strings or numbers; we keep a Decimal."""

    amount: Decimal
    currency_code: str

    @classmethod
    def of(cls, amount: str | int | Decimal, currency_code: str) -> Price:
        return cls(Decimal(str(amount)), currency_code)

    @classmethod
    def from_json(cls, data: JSON | None) -> Price | None:
        if not data or data.get("amount") is None or not data.get("currencyCode"):
            return None
        try:
            return cls(Decimal(str(data["amount"])), str(data["currencyCode"]))
        except InvalidOperation:
            return None

    def to_json(self) -> dict[str, str]:
        return {
            "amount": f"{self.amount:.2f}" if self.currency_code != "JPY" else f"{self.amount:.0f}",
            "currencyCode": self.currency_code,
        }


@dataclass(frozen=True)
class StatusDetails:
    state: str
    reason_code: str | None = None
    reason_description: str | None = None
    last_updated_timestamp: str | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> StatusDetails:
        data = data or {}
        return cls(
            state=_str(data, "state") or "",
            reason_code=_str(data, "reasonCode"),
            reason_description=_str(data, "reasonDescription"),
            last_updated_timestamp=_str(data, "lastUpdatedTimestamp"),
        )


@dataclass(frozen=True)
class WebCheckoutDetails:
    checkout_review_return_url: str | None = None
    checkout_result_return_url: str | None = None
    checkout_cancel_url: str | None = None
    amazon_pay_redirect_url: str | None = None
    checkout_mode: str | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> WebCheckoutDetails | None:
        if data is None:
            return None
        return cls(
            checkout_review_return_url=_str(data, "checkoutReviewReturnUrl"),
            checkout_result_return_url=_str(data, "checkoutResultReturnUrl"),
            checkout_cancel_url=_str(data, "checkoutCancelUrl"),
            amazon_pay_redirect_url=_str(data, "amazonPayRedirectUrl"),
            checkout_mode=_str(data, "checkoutMode"),
        )


@dataclass(frozen=True)
class PaymentDetails:
    payment_intent: str | None = None
    can_handle_pending_authorization: bool | None = None
    charge_amount: Price | None = None
    total_order_amount: Price | None = None
    presentment_currency: str | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> PaymentDetails | None:
        if data is None:
            return None
        return cls(
            payment_intent=_str(data, "paymentIntent"),
            can_handle_pending_authorization=_bool(data, "canHandlePendingAuthorization"),
            charge_amount=Price.from_json(_obj(data, "chargeAmount")),
            total_order_amount=Price.from_json(_obj(data, "totalOrderAmount")),
            presentment_currency=_str(data, "presentmentCurrency"),
        )


@dataclass(frozen=True)
class MerchantMetadata:
    merchant_reference_id: str | None = None
    merchant_store_name: str | None = None
    note_to_buyer: str | None = None
    custom_information: str | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> MerchantMetadata | None:
        if data is None:
            return None
        return cls(
            merchant_reference_id=_str(data, "merchantReferenceId"),
            merchant_store_name=_str(data, "merchantStoreName"),
            note_to_buyer=_str(data, "noteToBuyer"),
            custom_information=_str(data, "customInformation"),
        )


@dataclass(frozen=True)
class Buyer:
    buyer_id: str | None = None
    name: str | None = None
    email: str | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> Buyer | None:
        if data is None:
            return None
        return cls(_str(data, "buyerId"), _str(data, "name"), _str(data, "email"))


@dataclass(frozen=True)
class CheckoutSession:
    checkout_session_id: str
    status_details: StatusDetails
    charge_permission_type: str | None = None
    charge_permission_id: str | None = None
    charge_id: str | None = None
    store_id: str | None = None
    web_checkout_details: WebCheckoutDetails | None = None
    payment_details: PaymentDetails | None = None
    merchant_metadata: MerchantMetadata | None = None
    setup_only: bool | None = None
    buyer: Buyer | None = None
    creation_timestamp: str | None = None
    expiration_timestamp: str | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> str:
        return self.status_details.state

    @property
    def merchant_reference_id(self) -> str | None:
        return self.merchant_metadata.merchant_reference_id if self.merchant_metadata else None

    @property
    def charge_amount(self) -> Price | None:
        return self.payment_details.charge_amount if self.payment_details else None

    @classmethod
    def from_json(cls, data: JSON) -> CheckoutSession:
        pmof = _obj(data, "paymentMethodOnFileMetadata") or {}
        return cls(
            checkout_session_id=_str(data, "checkoutSessionId") or "",
            status_details=StatusDetails.from_json(_obj(data, "statusDetails")),
            charge_permission_type=_str(data, "chargePermissionType"),
            charge_permission_id=_str(data, "chargePermissionId"),
            charge_id=_str(data, "chargeId"),
            store_id=_str(data, "storeId"),
            web_checkout_details=WebCheckoutDetails.from_json(_obj(data, "webCheckoutDetails")),
            payment_details=PaymentDetails.from_json(_obj(data, "paymentDetails")),
            merchant_metadata=MerchantMetadata.from_json(_obj(data, "merchantMetadata")),
            setup_only=_bool(pmof, "setupOnly"),
            buyer=Buyer.from_json(_obj(data, "buyer")),
            creation_timestamp=_str(data, "creationTimestamp"),
            expiration_timestamp=_str(data, "expirationTimestamp"),
            release_environment=_str(data, "releaseEnvironment"),
            raw=data,
        )


@dataclass(frozen=True)
class CompleteResult:
    """Complete Checkout Session's answer: 200 = done, 202 = authorization still pending."""

    checkout_session: CheckoutSession
    authorization_pending: bool


@dataclass(frozen=True)
class ChargePermission:
    charge_permission_id: str
    status_details: StatusDetails
    charge_permission_type: str | None = None
    buyer: Buyer | None = None
    merchant_metadata: MerchantMetadata | None = None
    creation_timestamp: str | None = None
    expiration_timestamp: str | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> str:
        return self.status_details.state

    @classmethod
    def from_json(cls, data: JSON) -> ChargePermission:
        return cls(
            charge_permission_id=_str(data, "chargePermissionId") or "",
            status_details=StatusDetails.from_json(_obj(data, "statusDetails")),
            charge_permission_type=_str(data, "chargePermissionType"),
            buyer=Buyer.from_json(_obj(data, "buyer")),
            merchant_metadata=MerchantMetadata.from_json(_obj(data, "merchantMetadata")),
            creation_timestamp=_str(data, "creationTimestamp"),
            expiration_timestamp=_str(data, "expirationTimestamp"),
            release_environment=_str(data, "releaseEnvironment"),
            raw=data,
        )


@dataclass(frozen=True)
class Charge:
    charge_id: str
    status_details: StatusDetails
    charge_permission_id: str | None = None
    charge_amount: Price | None = None
    capture_amount: Price | None = None
    refunded_amount: Price | None = None
    creation_timestamp: str | None = None
    expiration_timestamp: str | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> str:
        return self.status_details.state

    @classmethod
    def from_json(cls, data: JSON) -> Charge:
        return cls(
            charge_id=_str(data, "chargeId") or "",
            status_details=StatusDetails.from_json(_obj(data, "statusDetails")),
            charge_permission_id=_str(data, "chargePermissionId"),
            charge_amount=Price.from_json(_obj(data, "chargeAmount")),
            capture_amount=Price.from_json(_obj(data, "captureAmount")),
            refunded_amount=Price.from_json(_obj(data, "refundedAmount")),
            creation_timestamp=_str(data, "creationTimestamp"),
            expiration_timestamp=_str(data, "expirationTimestamp"),
            release_environment=_str(data, "releaseEnvironment"),
            raw=data,
        )


@dataclass(frozen=True)
class Refund:
    refund_id: str
    status_details: StatusDetails
    charge_id: str | None = None
    refund_amount: Price | None = None
    creation_timestamp: str | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> str:
        return self.status_details.state

    @classmethod
    def from_json(cls, data: JSON) -> Refund:
        return cls(
            refund_id=_str(data, "refundId") or "",
            status_details=StatusDetails.from_json(_obj(data, "statusDetails")),
            charge_id=_str(data, "chargeId"),
            refund_amount=Price.from_json(_obj(data, "refundAmount")),
            creation_timestamp=_str(data, "creationTimestamp"),
            release_environment=_str(data, "releaseEnvironment"),
            raw=data,
        )
