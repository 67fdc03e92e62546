"""Typed, frozen views of Amazon Pay API objects: snake_case here, camelCase only at the JSON edge.

`from_json` is tolerant (unknown fields are ignored, missing ones become None, a state Amazon adds
later becomes UNKNOWN) because Amazon adds fields over time; the untouched JSON stays as `raw`.
Sections cited are those of docs/amazon-pay-api.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Self

from amazonpay.errors import DeclineCode

JSON = Mapping[str, Any]


def _obj(data: JSON, key: str) -> JSON | None:
    value = data.get(key)
    return value if isinstance(value, Mapping) else None


def _objects(data: JSON, key: str) -> list[JSON]:
    value = data.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


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


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _timestamp(data: JSON, key: str) -> datetime | None:
    """An aware UTC datetime from Amazon's `20200908T221012Z` form (section 4) or ISO 8601."""
    value = data.get(key)
    if not isinstance(value, str):
        return None
    try:
        # Python 3.11's fromisoformat reads the compact form too (ISO 8601's basic format),
        # at a small fraction of strptime's cost.
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Amazon's timestamps are UTC; one without an offset is read as UTC, not as local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- vocabularies ---------------------------------------------------------------------------


class _State(StrEnum):
    """An object state. A StrEnum, so `state == "Open"` still holds for callers using strings.

    Besides Amazon's states each has UNSPECIFIED (`""`, falsy: Amazon sent no state) and UNKNOWN
    (Amazon sent one we do not know, e.g. added later; the model's `state_raw` keeps it). They
    differ on purpose: a caller may read a missing state as "unchanged" but never a new one.
    """

    @classmethod
    def parse(cls, value: str | None) -> Self:
        """The member for Amazon's string: UNSPECIFIED when absent, UNKNOWN when unrecognised."""
        try:
            return cls(value or "")
        except ValueError:
            return cls("Unknown")


class CheckoutSessionState(_State):
    """Section 4."""

    OPEN = "Open"
    COMPLETED = "Completed"
    CANCELED = "Canceled"
    UNSPECIFIED = ""
    UNKNOWN = "Unknown"


class ChargePermissionState(_State):
    """Section 5.1."""

    CHARGEABLE = "Chargeable"
    NON_CHARGEABLE = "NonChargeable"
    CLOSED = "Closed"
    UNSPECIFIED = ""
    UNKNOWN = "Unknown"


class ChargeState(_State):
    """Section 5.1."""

    AUTHORIZATION_INITIATED = "AuthorizationInitiated"
    AUTHORIZED = "Authorized"
    CAPTURE_INITIATED = "CaptureInitiated"
    CAPTURED = "Captured"
    CANCELED = "Canceled"
    DECLINED = "Declined"
    UNSPECIFIED = ""
    UNKNOWN = "Unknown"


class RefundState(_State):
    """Section 5.1."""

    REFUND_INITIATED = "RefundInitiated"
    REFUNDED = "Refunded"
    DECLINED = "Declined"
    UNSPECIFIED = ""
    UNKNOWN = "Unknown"


class ChargeInitiator(StrEnum):
    """Who starts a Create Charge and whether it is scheduled (section 6).

    Customer- or merchant-initiated, unscheduled or recurring, in card-network terms: a buyer
    paying now with a saved wallet is CITU; a charge the shop starts on its own is MITU (MITR
    when it follows a schedule).
    """

    CITU = "CITU"
    MITU = "MITU"
    CITR = "CITR"
    MITR = "MITR"


class Channel(StrEnum):
    """Where the buyer is when a charge is made (Create Charge's `channel`, section 6)."""

    WEB = "Web"
    PHONE = "Phone"
    APP = "App"
    ALEXA = "Alexa"
    POINT_OF_SALE = "PointOfSale"
    FIRE_TV = "FireTv"
    OFFLINE = "Offline"
    AMAZON = "Amazon"


# -- parts ----------------------------------------------------------------------------------


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
        if not data or not data.get("currencyCode"):
            return None
        amount = _decimal(data.get("amount"))
        return None if amount is None else cls(amount, str(data["currencyCode"]))

    def to_json(self) -> dict[str, str]:
        return {
            "amount": f"{self.amount:.2f}" if self.currency_code != "JPY" else f"{self.amount:.0f}",
            "currencyCode": self.currency_code,
        }


@dataclass(frozen=True)
class StatusReason:
    """One entry of `statusDetails.reasons`: a Charge Permission can be held back by several."""

    reason_code: str | None
    reason_description: str | None = None


@dataclass(frozen=True)
class StatusDetails:
    """`statusDetails` as sent; each model turns `state_raw` into its own state enum."""

    state_raw: str
    reason_code: str | None = None
    reason_description: str | None = None
    last_updated_timestamp: datetime | None = None
    reasons: tuple[StatusReason, ...] = ()

    @classmethod
    def from_json(cls, data: JSON | None) -> StatusDetails:
        data = data or {}
        return cls(
            state_raw=_str(data, "state") or "",
            reason_code=_str(data, "reasonCode"),
            reason_description=_str(data, "reasonDescription"),
            last_updated_timestamp=_timestamp(data, "lastUpdatedTimestamp"),
            reasons=tuple(
                StatusReason(_str(r, "reasonCode"), _str(r, "reasonDescription"))
                for r in _objects(data, "reasons")
            ),
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
    phone_number: str | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> Buyer | None:
        if data is None:
            return None
        return cls(
            buyer_id=_str(data, "buyerId"),
            name=_str(data, "name"),
            email=_str(data, "email"),
            phone_number=_str(data, "phoneNumber"),
        )


@dataclass(frozen=True)
class Limits:
    """A Charge Permission's `limits`: the most it may ever charge and what is left of that."""

    amount_limit: Price | None = None
    amount_balance: Price | None = None

    @classmethod
    def from_json(cls, data: JSON | None) -> Limits | None:
        if data is None:
            return None
        return cls(
            amount_limit=Price.from_json(_obj(data, "amountLimit")),
            amount_balance=Price.from_json(_obj(data, "amountBalance")),
        )


def _reference_id(metadata: MerchantMetadata | None) -> str | None:
    return metadata.merchant_reference_id if metadata else None


# -- objects --------------------------------------------------------------------------------


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
    creation_timestamp: datetime | None = None
    expiration_timestamp: datetime | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> CheckoutSessionState:
        return CheckoutSessionState.parse(self.status_details.state_raw)

    @property
    def state_raw(self) -> str:
        """The state exactly as Amazon sent it ("" when it sent none), e.g. behind UNKNOWN."""
        return self.status_details.state_raw

    @property
    def reason_code(self) -> str | None:
        return self.status_details.reason_code

    @property
    def merchant_reference_id(self) -> str | None:
        return _reference_id(self.merchant_metadata)

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
            creation_timestamp=_timestamp(data, "creationTimestamp"),
            expiration_timestamp=_timestamp(data, "expirationTimestamp"),
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
    """The buyer's consent to be charged; for `PaymentMethodOnFile` the saved wallet (section 6)."""

    charge_permission_id: str
    status_details: StatusDetails
    charge_permission_type: str | None = None
    payment_descriptor: str | None = None
    limits: Limits | None = None
    buyer: Buyer | None = None
    merchant_metadata: MerchantMetadata | None = None
    creation_timestamp: datetime | None = None
    expiration_timestamp: datetime | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> ChargePermissionState:
        return ChargePermissionState.parse(self.status_details.state_raw)

    @property
    def state_raw(self) -> str:
        return self.status_details.state_raw

    @property
    def reason_code(self) -> str | None:
        return self.status_details.reason_code

    @property
    def reasons(self) -> tuple[StatusReason, ...]:
        """Why a NonChargeable permission cannot be charged; may name several (section 6)."""
        return self.status_details.reasons

    @property
    def merchant_reference_id(self) -> str | None:
        return _reference_id(self.merchant_metadata)

    @classmethod
    def from_json(cls, data: JSON) -> ChargePermission:
        # The wallet's label for the buyer ("Visa ****1111"): the first preference that has one.
        descriptors = [_str(p, "paymentDescriptor") for p in _objects(data, "paymentPreferences")]
        return cls(
            charge_permission_id=_str(data, "chargePermissionId") or "",
            status_details=StatusDetails.from_json(_obj(data, "statusDetails")),
            charge_permission_type=_str(data, "chargePermissionType"),
            payment_descriptor=next((d for d in descriptors if d), None),
            limits=Limits.from_json(_obj(data, "limits")),
            buyer=Buyer.from_json(_obj(data, "buyer")),
            merchant_metadata=MerchantMetadata.from_json(_obj(data, "merchantMetadata")),
            creation_timestamp=_timestamp(data, "creationTimestamp"),
            expiration_timestamp=_timestamp(data, "expirationTimestamp"),
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
    converted_amount: Price | None = None
    conversion_rate: Decimal | None = None
    soft_descriptor: str | None = None
    merchant_metadata: MerchantMetadata | None = None
    creation_timestamp: datetime | None = None
    expiration_timestamp: datetime | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> ChargeState:
        return ChargeState.parse(self.status_details.state_raw)

    @property
    def state_raw(self) -> str:
        return self.status_details.state_raw

    @property
    def reason_code(self) -> str | None:
        return self.status_details.reason_code

    @property
    def decline_code(self) -> DeclineCode | None:
        """Why a Declined charge was declined (a pending authorization can end so)."""
        if self.state is not ChargeState.DECLINED:
            return None
        return DeclineCode.parse(self.status_details.reason_code)

    @property
    def merchant_reference_id(self) -> str | None:
        return _reference_id(self.merchant_metadata)

    @classmethod
    def from_json(cls, data: JSON) -> Charge:
        return cls(
            charge_id=_str(data, "chargeId") or "",
            status_details=StatusDetails.from_json(_obj(data, "statusDetails")),
            charge_permission_id=_str(data, "chargePermissionId"),
            charge_amount=Price.from_json(_obj(data, "chargeAmount")),
            capture_amount=Price.from_json(_obj(data, "captureAmount")),
            refunded_amount=Price.from_json(_obj(data, "refundedAmount")),
            converted_amount=Price.from_json(_obj(data, "convertedAmount")),
            conversion_rate=_decimal(data.get("conversionRate")),
            soft_descriptor=_str(data, "softDescriptor"),
            merchant_metadata=MerchantMetadata.from_json(_obj(data, "merchantMetadata")),
            creation_timestamp=_timestamp(data, "creationTimestamp"),
            expiration_timestamp=_timestamp(data, "expirationTimestamp"),
            release_environment=_str(data, "releaseEnvironment"),
            raw=data,
        )


@dataclass(frozen=True)
class Refund:
    refund_id: str
    status_details: StatusDetails
    charge_id: str | None = None
    refund_amount: Price | None = None
    soft_descriptor: str | None = None
    creation_timestamp: datetime | None = None
    release_environment: str | None = None
    raw: JSON = field(default_factory=dict, repr=False, compare=False)

    @property
    def state(self) -> RefundState:
        return RefundState.parse(self.status_details.state_raw)

    @property
    def state_raw(self) -> str:
        return self.status_details.state_raw

    @property
    def reason_code(self) -> str | None:
        return self.status_details.reason_code

    @property
    def last_updated_timestamp(self) -> datetime | None:
        """When the state last changed, e.g. when RefundInitiated became Refunded."""
        return self.status_details.last_updated_timestamp

    @classmethod
    def from_json(cls, data: JSON) -> Refund:
        return cls(
            refund_id=_str(data, "refundId") or "",
            status_details=StatusDetails.from_json(_obj(data, "statusDetails")),
            charge_id=_str(data, "chargeId"),
            refund_amount=Price.from_json(_obj(data, "refundAmount")),
            soft_descriptor=_str(data, "softDescriptor"),
            creation_timestamp=_timestamp(data, "creationTimestamp"),
            release_environment=_str(data, "releaseEnvironment"),
            raw=data,
        )
