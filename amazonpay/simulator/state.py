"""The simulator's in-memory objects and their state machines (docs/amazon-pay-api.md sections 4-6).

Objects are kept as the camelCase JSON Amazon returns, with every field of section 4 present
(null where unset). The caller (the Simulator) holds one lock around every call, so nothing
here is thread-aware. Time-driven changes (24 h expiry, pending authorizations) happen in
`tick()`, which the caller runs before each request against an injectable clock.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

JSONObject = dict[str, Any]

SANDBOX = "Sandbox"
LIVE = "Live"

SESSION_LIFETIME = timedelta(hours=24)  # section 4 / 5.2: Open sessions cancel after 24 h
PENDING_AUTHORIZATION_DELAY = timedelta(seconds=30)  # section 11: 0701 authorizes after ~30 s
REFUND_DELAY = timedelta(seconds=5)
AUTHORIZATION_LIFETIME = timedelta(days=30)  # section 5.1: an authorized Charge expires in 30 days
ONE_TIME_PERMISSION_LIFETIME = timedelta(days=180)

# The buyer's choices on the hosted page (section 11 sandbox payment methods).
PAYMENT_METHODS: dict[str, str] = {
    "1111": "success",
    "3064": "BuyerCanceled",
    "3434": "Declined",
    "0701": "pending",
}
OUTCOMES = ("success", "BuyerCanceled", "Declined", "pending", "AmazonRejected")

# Section 11: sandbox simulation strings (header x-amz-pay-simulation-code) per operation.
SIMULATION_CODES: dict[str, tuple[str, ...]] = {
    "CompleteCheckoutSession": (
        "BuyerCanceled",
        "Declined",
        "AmazonCanceled",
        "AuthorizationInitiated",
    ),
    "CreateCharge": ("SoftDeclined", "HardDeclined", "AmazonRejected", "TransactionTimedOut"),
    "CloseChargePermission": ("AmazonClosed",),
}

_REASON_DESCRIPTIONS = {
    "BuyerCanceled": "The buyer canceled the checkout.",
    "Declined": "The payment was declined.",
    "Expired": "The Checkout Session expired after 24 hours.",
    "AmazonRejected": "Amazon rejected the transaction.",
    "AmazonCanceled": "Amazon canceled the transaction.",
}


class SimulatorError(Exception):
    """An Amazon-style error answer: HTTP status and `{"reasonCode", "message"}` (section 5.4)."""

    def __init__(self, status: int, reason_code: str, message: str) -> None:
        super().__init__(f"{status} {reason_code}: {message}")
        self.status = status
        self.reason_code = reason_code
        self.message = message

    def body(self) -> JSONObject:
        return {"reasonCode": self.reason_code, "message": self.message}


@dataclass(frozen=True)
class Event:
    """A state or attribute change that becomes an IPN (section 10)."""

    object_type: str  # CHARGE_PERMISSION, CHARGE, REFUND
    object_id: str
    charge_permission_id: str
    notification_type: str = "STATE_CHANGE"


@dataclass
class _SessionMeta:
    environment: str
    outcome: str | None = None  # "success" or "pending" once the buyer finished


@dataclass
class _ChargeMeta:
    environment: str
    authorize_at: datetime | None = None
    capture_on_authorize: bool = False
    authorized_at: datetime | None = None


@dataclass
class _RefundMeta:
    environment: str
    refund_at: datetime


@dataclass
class _PermissionMeta:
    environment: str
    charge_ids: list[str] = field(default_factory=list)


def amz_timestamp(moment: datetime) -> str:
    """`20191015T204327Z`, the timestamp form of every object (section 4)."""
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _decimal(value: Any, field_name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise SimulatorError(400, "InvalidParameterValue", f"{field_name} must be a number")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise SimulatorError(
            400, "InvalidParameterValue", f"{field_name} {value!r} is not a number"
        ) from None
    if not result.is_finite() or result < 0:
        raise SimulatorError(400, "InvalidParameterValue", f"{field_name} {value!r} is invalid")
    return result


def parse_price(value: Any, field_name: str) -> tuple[Decimal, str]:
    """`{amount, currencyCode}` with the amount as string or number (section 1.11)."""
    if not isinstance(value, Mapping):
        raise SimulatorError(400, "InvalidParameterValue", f"{field_name} must be an object")
    currency = value.get("currencyCode")
    if not isinstance(currency, str) or len(currency) != 3:
        raise SimulatorError(
            400, "InvalidParameterValue", f"{field_name}.currencyCode must be an ISO currency"
        )
    return _decimal(value.get("amount"), f"{field_name}.amount"), currency


def price_json(amount: Decimal, currency: str) -> JSONObject:
    text = f"{amount:.0f}" if currency == "JPY" else f"{amount:.2f}"
    return {"amount": text, "currencyCode": currency}


def _same_price(a: Any, b: Any, field_name: str) -> bool:
    amount_a, currency_a = parse_price(a, field_name)
    amount_b, currency_b = parse_price(b, field_name)
    return amount_a == amount_b and currency_a == currency_b


def _merge(target: JSONObject, patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _object_body(body: Any) -> JSONObject:
    if not isinstance(body, dict):
        raise SimulatorError(400, "InvalidRequestFormat", "The request body must be a JSON object")
    return body


_SIMULATED_BUYER: JSONObject = {
    "buyerId": "amzn1.account.SIMULATEDBUYER0000000000000",
    "name": "Simulated Buyer",
    "email": "buyer@example.com",
    "phoneNumber": "+1 206 555 0100",
    "primeMembershipTypes": None,
}
_SIMULATED_ADDRESS: JSONObject = {
    "name": "Simulated Buyer",
    "addressLine1": "410 Terry Ave N",
    "addressLine2": None,
    "addressLine3": None,
    "city": "Seattle",
    "county": None,
    "district": None,
    "stateOrRegion": "WA",
    "postalCode": "98109",
    "countryCode": "US",
    "phoneNumber": "+1 206 555 0100",
}


class Store:
    """Checkout Sessions, Charge Permissions, Charges and Refunds with their transitions."""

    def __init__(self, *, merchant_id: str, now: Callable[[], datetime]) -> None:
        self.merchant_id = merchant_id
        self._now = now
        self.sessions: dict[str, JSONObject] = {}
        self.permissions: dict[str, JSONObject] = {}
        self.charges: dict[str, JSONObject] = {}
        self.refunds: dict[str, JSONObject] = {}
        self._session_meta: dict[str, _SessionMeta] = {}
        self._permission_meta: dict[str, _PermissionMeta] = {}
        self._charge_meta: dict[str, _ChargeMeta] = {}
        self._refund_meta: dict[str, _RefundMeta] = {}
        self._session_created: dict[str, datetime] = {}
        self.events: list[Event] = []

    # ----------------------------------------------------------------- helpers

    def _stamp(self) -> str:
        return amz_timestamp(self._now())

    def _status(self, state: str, reason: str | None = None) -> JSONObject:
        return {
            "state": state,
            "reasonCode": reason,
            "reasonDescription": _REASON_DESCRIPTIONS.get(reason or ""),
            "lastUpdatedTimestamp": self._stamp(),
        }

    def _emit(self, object_type: str, object_id: str, permission_id: str, kind: str) -> None:
        self.events.append(Event(object_type, object_id, permission_id, kind))

    def drain_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def environment_of_session(self, session_id: str) -> str | None:
        meta = self._session_meta.get(session_id)
        return meta.environment if meta else None

    def _lookup(
        self, table: Mapping[str, JSONObject], meta: Mapping[str, Any], env: str, object_id: str
    ) -> JSONObject:
        # Objects live in one environment: a sandbox id is unknown on /live (section 11).
        found = table.get(object_id)
        if found is None or meta[object_id].environment != env:
            raise SimulatorError(
                404, "ResourceNotFound", f"The requested resource {object_id} was not found"
            )
        return found

    # ------------------------------------------------------------------ clock

    def tick(self) -> None:
        """Apply every time-driven transition that is due (24 h expiry, pending authorizations)."""
        now = self._now()
        for session_id, session in self.sessions.items():
            if session["statusDetails"]["state"] == "Open":
                created = self._session_created[session_id]
                if now >= created + SESSION_LIFETIME:
                    session["statusDetails"] = self._status("Canceled", "Expired")
        for charge_id, meta in self._charge_meta.items():
            charge = self.charges[charge_id]
            state = charge["statusDetails"]["state"]
            if state == "AuthorizationInitiated" and meta.authorize_at and now >= meta.authorize_at:
                self._authorize(charge_id)
            elif (
                state == "Authorized"
                and meta.authorized_at
                and now >= meta.authorized_at + AUTHORIZATION_LIFETIME
            ):
                charge["statusDetails"] = self._status("Canceled", "ExpiredUnused")
                self._emit("CHARGE", charge_id, charge["chargePermissionId"], "STATE_CHANGE")
        for refund_id, refund_meta in self._refund_meta.items():
            refund = self.refunds[refund_id]
            if (
                refund["statusDetails"]["state"] == "RefundInitiated"
                and now >= refund_meta.refund_at
            ):
                refund["statusDetails"] = self._status("Refunded")
                permission_id = self.charges[refund["chargeId"]]["chargePermissionId"]
                self._emit("REFUND", refund_id, permission_id, "STATE_CHANGE")

    # ------------------------------------------------------- checkout sessions

    def create_session(self, env: str, body: Any, *, hosted_base_url: str) -> JSONObject:
        """Create Checkout Session (section 5.1), from the API or the button's payloadJSON."""
        payload = _object_body(body)
        web = payload.get("webCheckoutDetails")
        if not isinstance(web, Mapping):
            raise SimulatorError(
                400, "MissingParameterValue", "webCheckoutDetails is a required parameter"
            )
        if not isinstance(payload.get("storeId"), str) or not payload["storeId"]:
            raise SimulatorError(400, "MissingParameterValue", "storeId is a required parameter")
        details = payload.get("paymentDetails")
        if details is not None and not isinstance(details, Mapping):
            raise SimulatorError(400, "InvalidParameterValue", "paymentDetails must be an object")
        for price_field in ("chargeAmount", "totalOrderAmount"):
            if isinstance(details, Mapping) and details.get(price_field) is not None:
                parse_price(details[price_field], f"paymentDetails.{price_field}")
        permission_type = payload.get("chargePermissionType") or "OneTime"
        if permission_type not in ("OneTime", "Recurring", "PaymentMethodOnFile"):
            raise SimulatorError(
                400, "InvalidParameterValue", f"chargePermissionType {permission_type!r} is invalid"
            )
        intent = (details or {}).get("paymentIntent")
        if intent is not None and intent not in ("Confirm", "Authorize", "AuthorizeWithCapture"):
            raise SimulatorError(
                400, "InvalidParameterValue", f"paymentIntent {intent!r} is invalid"
            )
        if web.get("checkoutMode") not in (None, "ProcessOrder"):
            raise SimulatorError(400, "InvalidParameterValue", "checkoutMode must be ProcessOrder")

        session_id = str(uuid.uuid4())
        now = self._now()
        session: JSONObject = {
            "checkoutSessionId": session_id,
            "webCheckoutDetails": {
                "checkoutReviewReturnUrl": None,
                "checkoutResultReturnUrl": None,
                "checkoutCancelUrl": None,
                "amazonPayRedirectUrl": None,
                "checkoutMode": None,
            },
            "productType": payload.get("productType", "PayAndShip"),
            "paymentDetails": {
                "paymentIntent": None,
                "canHandlePendingAuthorization": False,
                "chargeAmount": None,
                "totalOrderAmount": None,
                "presentmentCurrency": None,
                "softDescriptor": None,
                "allowOvercharge": None,
                "extendExpiration": None,
                "estimateOrderTotal": None,
            },
            "chargePermissionType": permission_type,
            "recurringMetadata": None,
            "paymentMethodOnFileMetadata": None,
            "merchantMetadata": {
                "merchantReferenceId": None,
                "merchantStoreName": None,
                "noteToBuyer": None,
                "customInformation": None,
            },
            "supplementaryData": None,
            "buyer": None,
            "billingAddress": None,
            "shippingAddress": None,
            "shippingAddressList": None,
            "multiAddressesCheckoutMetadata": None,
            "paymentPreferences": [None],
            "statusDetails": self._status("Open"),
            "constraints": [],
            "creationTimestamp": amz_timestamp(now),
            "expirationTimestamp": amz_timestamp(now + SESSION_LIFETIME),
            "chargePermissionId": None,
            "chargeId": None,
            "storeId": payload["storeId"],
            "deliverySpecifications": None,
            "addressDetails": None,
            "scopes": None,
            "providerMetadata": {"providerReferenceId": None},
            "platformId": None,
            "releaseEnvironment": env,
            "checkoutButtonText": None,
        }
        _merge(
            session,
            {
                k: v
                for k, v in payload.items()
                if k not in ("storeId", "chargePermissionType", "checkoutSessionId")
            },
        )
        session["webCheckoutDetails"]["amazonPayRedirectUrl"] = None
        self._session_created[session_id] = now
        self.sessions[session_id] = session
        self._session_meta[session_id] = _SessionMeta(environment=env)
        self._refresh_constraints(session_id, hosted_base_url)
        return copy.deepcopy(session)

    def _setup_only(self, session: JSONObject) -> bool:
        metadata = session.get("paymentMethodOnFileMetadata") or {}
        return bool(
            session["chargePermissionType"] == "PaymentMethodOnFile" and metadata.get("setupOnly")
        )

    def _refresh_constraints(self, session_id: str, hosted_base_url: str | None) -> None:
        # Constraint ids and texts as seen in real responses (section 4).
        session = self.sessions[session_id]
        meta = self._session_meta[session_id]
        constraints: list[JSONObject] = []
        web = session["webCheckoutDetails"]
        details = session["paymentDetails"]
        if not web.get("checkoutResultReturnUrl"):
            constraints.append(
                {
                    "constraintId": "CheckoutResultReturnUrlNotSet",
                    "description": "checkoutResultReturnUrl is not set.",
                }
            )
        if not self._setup_only(session) and not details.get("chargeAmount"):
            constraints.append(
                {"constraintId": "ChargeAmountNotSet", "description": "chargeAmount is not set."}
            )
        if not details.get("paymentIntent"):
            constraints.append(
                {"constraintId": "PaymentIntentNotSet", "description": "paymentIntent is not set."}
            )
        if meta.outcome is None:
            constraints.append(
                {
                    "constraintId": "BuyerNotAssociated",
                    "description": "The buyer has not been associated with the Checkout Session.",
                }
            )
        session["constraints"] = constraints
        ready = all(c["constraintId"] == "BuyerNotAssociated" for c in constraints)
        if ready and meta.outcome is None and hosted_base_url is not None:
            web["amazonPayRedirectUrl"] = f"{hosted_base_url}/hosted/{session_id}"
        elif not ready:
            web["amazonPayRedirectUrl"] = None

    def get_session(self, env: str, session_id: str) -> JSONObject:
        return copy.deepcopy(self._lookup(self.sessions, self._session_meta, env, session_id))

    def session_for_buyer(self, session_id: str) -> JSONObject | None:
        """The session as the hosted page sees it, in any environment."""
        found = self.sessions.get(session_id)
        return copy.deepcopy(found) if found is not None else None

    def update_session(
        self, env: str, session_id: str, body: Any, *, hosted_base_url: str
    ) -> JSONObject:
        session = self._lookup(self.sessions, self._session_meta, env, session_id)
        patch = _object_body(body)
        self._require_open(session)
        details = patch.get("paymentDetails")
        if isinstance(details, Mapping):
            for price_field in ("chargeAmount", "totalOrderAmount"):
                if details.get(price_field) is not None:
                    parse_price(details[price_field], f"paymentDetails.{price_field}")
        allowed = {
            "webCheckoutDetails",
            "paymentDetails",
            "merchantMetadata",
            "recurringMetadata",
            "providerMetadata",
            "platformId",
            "supplementaryData",
            "addressDetails",
            "deliverySpecifications",
        }
        unknown = sorted(set(patch) - allowed)
        if unknown:
            raise SimulatorError(
                400, "UnrecognizedField", f"The field {unknown[0]} is not allowed in this request"
            )
        _merge(session, patch)
        session["statusDetails"]["lastUpdatedTimestamp"] = self._stamp()
        self._refresh_constraints(session_id, hosted_base_url)
        return copy.deepcopy(session)

    def _require_open(self, session: JSONObject) -> None:
        state = session["statusDetails"]["state"]
        if state == "Completed":
            raise SimulatorError(
                422,
                "InvalidCheckoutSessionStatus",
                "You tried to call an operation on a Checkout Session that is in a state where "
                "that operation is not allowed (Completed)",
            )
        if state == "Canceled":
            reason = session["statusDetails"]["reasonCode"]
            raise SimulatorError(
                422,
                "CheckoutSessionCanceled",
                f"The Checkout Session was canceled ({reason}); read statusDetails.reasonCode",
            )

    def set_buyer_outcome(self, session_id: str, outcome: str) -> JSONObject:
        """Record the buyer's choice on the hosted page (section 11 test payment methods)."""
        session = self.sessions.get(session_id)
        if session is None:
            raise SimulatorError(
                404, "ResourceNotFound", f"Checkout Session {session_id} not found"
            )
        if outcome not in OUTCOMES:
            raise SimulatorError(400, "InvalidParameterValue", f"unknown outcome {outcome!r}")
        if session["statusDetails"]["state"] != "Open":
            raise SimulatorError(
                422, "InvalidCheckoutSessionStatus", "The Checkout Session is no longer Open"
            )
        meta = self._session_meta[session_id]
        if outcome in ("success", "pending"):
            meta.outcome = outcome
            session["buyer"] = copy.deepcopy(_SIMULATED_BUYER)
            session["billingAddress"] = copy.deepcopy(_SIMULATED_ADDRESS)
            if session["productType"] != "PayOnly":
                session["shippingAddress"] = copy.deepcopy(_SIMULATED_ADDRESS)
            last_digits = "0701" if outcome == "pending" else "1111"
            session["paymentPreferences"] = [
                {"paymentDescriptor": f"Visa ****{last_digits} (Amazon Pay)"}
            ]
            session["constraints"] = []
            session["webCheckoutDetails"]["amazonPayRedirectUrl"] = None
            session["statusDetails"]["lastUpdatedTimestamp"] = self._stamp()
        else:
            session["statusDetails"] = self._status("Canceled", outcome)
        return copy.deepcopy(session)

    def complete_session(
        self,
        env: str,
        session_id: str,
        body: Any,
        *,
        force_pending: bool = False,
        simulation: str | None = None,
    ) -> tuple[int, JSONObject]:
        """Complete Checkout Session (section 5.2): 200, or 202 while authorization is pending."""
        session = self._lookup(self.sessions, self._session_meta, env, session_id)
        request = _object_body(body)
        self._require_open(session)
        meta = self._session_meta[session_id]
        if meta.outcome is None:
            # Documented choice: no buyer yet is a status error, not a constraint list.
            raise SimulatorError(
                422,
                "InvalidCheckoutSessionStatus",
                "The buyer has not completed checkout on the Amazon Pay page for this "
                "Checkout Session (constraint BuyerNotAssociated)",
            )
        details = session["paymentDetails"]
        setup_only = self._setup_only(session)
        if not setup_only or request.get("chargeAmount") is not None:
            if request.get("chargeAmount") is None:
                raise SimulatorError(
                    400, "MissingParameterValue", "chargeAmount is a required parameter"
                )
            expected = details.get("chargeAmount")
            if expected is None or not _same_price(
                request["chargeAmount"], expected, "chargeAmount"
            ):
                raise SimulatorError(
                    409,
                    "AmountMismatch",
                    "The chargeAmount does not match the chargeAmount of the Checkout Session",
                )
        if details.get("totalOrderAmount") is not None and not setup_only:
            sent = request.get("totalOrderAmount")
            if sent is None or not _same_price(
                sent, details["totalOrderAmount"], "totalOrderAmount"
            ):
                raise SimulatorError(
                    409,
                    "AmountMismatch",
                    "The totalOrderAmount does not match the totalOrderAmount of the Checkout "
                    "Session",
                )
        if simulation in ("BuyerCanceled", "Declined", "AmazonCanceled"):
            # Section 11: the simulation string overrides the buyer's payment method.
            session["statusDetails"] = self._status("Canceled", simulation)
            self._require_open(session)
        pending = (
            force_pending or meta.outcome == "pending" or simulation == "AuthorizationInitiated"
        )
        permission_id = self._new_permission(env, session)
        intent = details.get("paymentIntent")
        if not setup_only and intent in ("Authorize", "AuthorizeWithCapture"):
            amount, currency = parse_price(details["chargeAmount"], "chargeAmount")
            charge_id = self._new_charge(
                env,
                permission_id,
                amount,
                currency,
                capture=intent == "AuthorizeWithCapture",
                pending=pending,
                merchant_metadata=session["merchantMetadata"],
                soft_descriptor=details.get("softDescriptor"),
            )
            session["chargeId"] = charge_id
        session["chargePermissionId"] = permission_id
        session["statusDetails"] = self._status("Completed")
        session["constraints"] = []
        return (202 if pending else 200), copy.deepcopy(session)

    # ------------------------------------------------------ charge permissions

    def _new_id(self, prefix: str) -> str:
        digits = f"{secrets.randbelow(10**7):07d}-{secrets.randbelow(10**7):07d}"
        return f"{prefix}-{digits}"

    def _new_permission(self, env: str, session: JSONObject) -> str:
        # S01 (sandbox) / P01 (live) style ids (contract: `S01-…` / `P01-…`).
        permission_id = self._new_id("S01" if env == SANDBOX else "P01")
        while permission_id in self.permissions:
            permission_id = self._new_id("S01" if env == SANDBOX else "P01")
        now = self._now()
        amount = session["paymentDetails"].get("chargeAmount")
        limits = None
        if amount is not None:
            value, currency = parse_price(amount, "chargeAmount")
            limits = {
                "amountLimit": price_json(value, currency),
                "amountBalance": price_json(value, currency),
            }
        permission_type = session["chargePermissionType"]
        self.permissions[permission_id] = {
            "chargePermissionId": permission_id,
            "chargePermissionReferenceId": None,
            "chargePermissionType": permission_type,
            "buyer": copy.deepcopy(session["buyer"]),
            "shippingAddress": copy.deepcopy(session["shippingAddress"]),
            "billingAddress": copy.deepcopy(session["billingAddress"]),
            "paymentPreferences": copy.deepcopy(session["paymentPreferences"]),
            "merchantMetadata": copy.deepcopy(session["merchantMetadata"]),
            "recurringMetadata": copy.deepcopy(session["recurringMetadata"]),
            "platformId": session["platformId"],
            "limits": limits,
            "presentmentCurrency": session["paymentDetails"].get("presentmentCurrency"),
            "statusDetails": {
                "state": "Chargeable",
                "reasons": None,
                "lastUpdatedTimestamp": amz_timestamp(now),
            },
            "creationTimestamp": amz_timestamp(now),
            "expirationTimestamp": (
                amz_timestamp(now + ONE_TIME_PERMISSION_LIFETIME)
                if permission_type == "OneTime"
                else None
            ),
            "releaseEnvironment": env,
        }
        self._permission_meta[permission_id] = _PermissionMeta(environment=env)
        self._emit("CHARGE_PERMISSION", permission_id, permission_id, "STATE_CHANGE")
        return permission_id

    def get_permission(self, env: str, permission_id: str) -> JSONObject:
        return copy.deepcopy(
            self._lookup(self.permissions, self._permission_meta, env, permission_id)
        )

    def update_permission(self, env: str, permission_id: str, body: Any) -> JSONObject:
        permission = self._lookup(self.permissions, self._permission_meta, env, permission_id)
        patch = _object_body(body)
        unknown = sorted(set(patch) - {"merchantMetadata", "recurringMetadata"})
        if unknown:
            raise SimulatorError(
                400, "UnrecognizedField", f"The field {unknown[0]} is not allowed in this request"
            )
        if permission["statusDetails"]["state"] == "Closed":
            raise SimulatorError(
                422, "InvalidChargePermissionStatus", "The Charge Permission is Closed"
            )
        _merge(permission, patch)
        self._emit("CHARGE_PERMISSION", permission_id, permission_id, "ATTRIBUTE_CHANGE")
        return copy.deepcopy(permission)

    def close_permission(
        self, env: str, permission_id: str, body: Any, *, simulation: str | None = None
    ) -> JSONObject:
        permission = self._lookup(self.permissions, self._permission_meta, env, permission_id)
        request = _object_body(body)
        reason = request.get("closureReason")
        if not isinstance(reason, str) or not reason:
            raise SimulatorError(
                400, "MissingParameterValue", "closureReason is a required parameter"
            )
        if permission["statusDetails"]["state"] != "Closed":
            permission["statusDetails"] = {
                "state": "Closed",
                "reasons": [
                    {"reasonCode": simulation or "MerchantClosed", "reasonDescription": reason}
                ],
                "lastUpdatedTimestamp": self._stamp(),
            }
            self._emit("CHARGE_PERMISSION", permission_id, permission_id, "STATE_CHANGE")
            if request.get("cancelPendingCharges") is True:
                for charge_id in self._permission_meta[permission_id].charge_ids:
                    charge = self.charges[charge_id]
                    if charge["statusDetails"]["state"] in ("AuthorizationInitiated", "Authorized"):
                        charge["statusDetails"] = self._status(
                            "Canceled", "ChargePermissionCanceled"
                        )
                        self._emit("CHARGE", charge_id, permission_id, "STATE_CHANGE")
        return copy.deepcopy(permission)

    def set_permission_state(
        self, permission_id: str, state: str, reason_code: str | None
    ) -> JSONObject:
        """Control API: make a Charge Permission NonChargeable/Chargeable/Closed (section 6)."""
        permission = self.permissions.get(permission_id)
        if permission is None:
            raise SimulatorError(404, "ResourceNotFound", f"{permission_id} not found")
        if state not in ("Chargeable", "NonChargeable", "Closed"):
            raise SimulatorError(400, "InvalidParameterValue", f"unknown state {state!r}")
        permission["statusDetails"] = {
            "state": state,
            "reasons": [{"reasonCode": reason_code, "reasonDescription": None}]
            if reason_code
            else None,
            "lastUpdatedTimestamp": self._stamp(),
        }
        self._emit("CHARGE_PERMISSION", permission_id, permission_id, "STATE_CHANGE")
        return copy.deepcopy(permission)

    # ----------------------------------------------------------------- charges

    def _new_charge(
        self,
        env: str,
        permission_id: str,
        amount: Decimal,
        currency: str,
        *,
        capture: bool,
        pending: bool,
        merchant_metadata: Any = None,
        soft_descriptor: Any = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        charge_id = f"{permission_id}-C{secrets.randbelow(10**6):06d}"
        while charge_id in self.charges:
            charge_id = f"{permission_id}-C{secrets.randbelow(10**6):06d}"
        now = self._now()
        charge: JSONObject = {
            "chargeId": charge_id,
            "chargePermissionId": permission_id,
            "chargeAmount": price_json(amount, currency),
            "captureAmount": None,
            "refundedAmount": None,
            "convertedAmount": None,
            "conversionRate": None,
            "softDescriptor": soft_descriptor,
            "merchantMetadata": copy.deepcopy(merchant_metadata),
            "providerMetadata": {"providerReferenceId": None},
            "statusDetails": self._status("AuthorizationInitiated"),
            "creationTimestamp": amz_timestamp(now),
            "expirationTimestamp": amz_timestamp(now + AUTHORIZATION_LIFETIME),
            "releaseEnvironment": env,
            "channel": None,
            "chargeInitiator": None,
            "platformId": None,
            "webCheckoutDetails": None,
        }
        if extra:
            charge.update({k: copy.deepcopy(v) for k, v in extra.items() if k in charge})
        self.charges[charge_id] = charge
        meta = _ChargeMeta(environment=env, capture_on_authorize=capture)
        self._charge_meta[charge_id] = meta
        self._permission_meta[permission_id].charge_ids.append(charge_id)
        if pending:
            meta.authorize_at = now + PENDING_AUTHORIZATION_DELAY
            self._emit("CHARGE", charge_id, permission_id, "STATE_CHANGE")
        else:
            self._authorize(charge_id)
        return charge_id

    def _authorize(self, charge_id: str) -> None:
        charge = self.charges[charge_id]
        meta = self._charge_meta[charge_id]
        meta.authorize_at = None
        meta.authorized_at = self._now()
        if meta.capture_on_authorize:
            self._capture(charge, charge["chargeAmount"])
        else:
            charge["statusDetails"] = self._status("Authorized")
        self._emit("CHARGE", charge_id, charge["chargePermissionId"], "STATE_CHANGE")

    def _capture(self, charge: JSONObject, amount: JSONObject) -> None:
        charge["captureAmount"] = copy.deepcopy(amount)
        charge["refundedAmount"] = {"amount": "0.00", "currencyCode": amount["currencyCode"]}
        charge["statusDetails"] = self._status("Captured")

    def create_charge(self, env: str, body: Any, *, simulation: str | None = None) -> JSONObject:
        request = _object_body(body)
        permission_id = request.get("chargePermissionId")
        if not isinstance(permission_id, str):
            raise SimulatorError(
                400, "MissingParameterValue", "chargePermissionId is a required parameter"
            )
        permission = self._lookup(self.permissions, self._permission_meta, env, permission_id)
        if request.get("chargeAmount") is None:
            raise SimulatorError(
                400, "MissingParameterValue", "chargeAmount is a required parameter"
            )
        amount, currency = parse_price(request["chargeAmount"], "chargeAmount")
        if permission["statusDetails"]["state"] != "Chargeable":
            raise SimulatorError(
                422,
                "InvalidChargePermissionStatus",
                f"The Charge Permission is {permission['statusDetails']['state']}",
            )
        if simulation is not None:
            # Section 11 / 5.3: Create Charge decline codes, answered as errors.
            raise SimulatorError(400, simulation, f"Simulated {simulation} for this Charge")
        charge_id = self._new_charge(
            env,
            permission_id,
            amount,
            currency,
            capture=request.get("captureNow") is True,
            pending=False,
            merchant_metadata=request.get("merchantMetadata"),
            soft_descriptor=request.get("softDescriptor"),
            extra={
                k: request.get(k)
                for k in ("channel", "chargeInitiator", "platformId", "providerMetadata")
                if request.get(k) is not None
            },
        )
        return copy.deepcopy(self.charges[charge_id])

    def get_charge(self, env: str, charge_id: str) -> JSONObject:
        return copy.deepcopy(self._lookup(self.charges, self._charge_meta, env, charge_id))

    def capture_charge(self, env: str, charge_id: str, body: Any) -> JSONObject:
        charge = self._lookup(self.charges, self._charge_meta, env, charge_id)
        request = _object_body(body)
        if request.get("captureAmount") is None:
            raise SimulatorError(
                400, "MissingParameterValue", "captureAmount is a required parameter"
            )
        amount, currency = parse_price(request["captureAmount"], "captureAmount")
        state = charge["statusDetails"]["state"]
        if state == "Captured" and _same_price(
            request["captureAmount"], charge["captureAmount"], "captureAmount"
        ):
            return copy.deepcopy(charge)
        if state != "Authorized":
            raise SimulatorError(422, "InvalidChargeStatus", f"You cannot capture a {state} Charge")
        authorized, authorized_currency = parse_price(charge["chargeAmount"], "chargeAmount")
        if currency != authorized_currency:
            raise SimulatorError(400, "CurrencyMismatch", "captureAmount currency differs")
        if amount > authorized:
            raise SimulatorError(
                400, "TransactionAmountExceeded", "captureAmount exceeds the authorized amount"
            )
        if request.get("softDescriptor") is not None:
            charge["softDescriptor"] = request["softDescriptor"]
        self._capture(charge, price_json(amount, currency))
        self._emit("CHARGE", charge_id, charge["chargePermissionId"], "STATE_CHANGE")
        return copy.deepcopy(charge)

    def cancel_charge(self, env: str, charge_id: str, body: Any) -> JSONObject:
        charge = self._lookup(self.charges, self._charge_meta, env, charge_id)
        request = _object_body(body)
        reason = request.get("cancellationReason")
        state = charge["statusDetails"]["state"]
        if state == "Canceled":
            return copy.deepcopy(charge)
        if state not in ("AuthorizationInitiated", "Authorized"):
            raise SimulatorError(422, "InvalidChargeStatus", f"You cannot cancel a {state} Charge")
        charge["statusDetails"] = self._status("Canceled", "MerchantCanceled")
        charge["statusDetails"]["reasonDescription"] = reason if isinstance(reason, str) else None
        self._charge_meta[charge_id].authorize_at = None
        self._emit("CHARGE", charge_id, charge["chargePermissionId"], "STATE_CHANGE")
        return copy.deepcopy(charge)

    def set_charge_outcome(self, charge_id: str, outcome: str) -> JSONObject:
        """Control API: settle a pending authorization now (Authorized / SoftDeclined / ...)."""
        charge = self.charges.get(charge_id)
        if charge is None:
            raise SimulatorError(404, "ResourceNotFound", f"{charge_id} not found")
        if charge["statusDetails"]["state"] != "AuthorizationInitiated":
            raise SimulatorError(422, "InvalidChargeStatus", "The Charge is not pending")
        if outcome == "Authorized":
            self._authorize(charge_id)
        elif outcome in ("SoftDeclined", "HardDeclined", "Declined"):
            reason = "HardDeclined" if outcome == "Declined" else outcome
            charge["statusDetails"] = self._status("Declined", reason)
            self._charge_meta[charge_id].authorize_at = None
            self._emit("CHARGE", charge_id, charge["chargePermissionId"], "STATE_CHANGE")
        else:
            raise SimulatorError(400, "InvalidParameterValue", f"unknown outcome {outcome!r}")
        return copy.deepcopy(charge)

    # ----------------------------------------------------------------- refunds

    def create_refund(self, env: str, body: Any) -> JSONObject:
        request = _object_body(body)
        charge_id = request.get("chargeId")
        if not isinstance(charge_id, str):
            raise SimulatorError(400, "MissingParameterValue", "chargeId is a required parameter")
        charge = self._lookup(self.charges, self._charge_meta, env, charge_id)
        if request.get("refundAmount") is None:
            raise SimulatorError(
                400, "MissingParameterValue", "refundAmount is a required parameter"
            )
        amount, currency = parse_price(request["refundAmount"], "refundAmount")
        if charge["statusDetails"]["state"] != "Captured":
            raise SimulatorError(
                422,
                "InvalidChargeStatus",
                f"You cannot refund a {charge['statusDetails']['state']} Charge",
            )
        captured, captured_currency = parse_price(charge["captureAmount"], "captureAmount")
        refunded, _ = parse_price(charge["refundedAmount"], "refundedAmount")
        if currency != captured_currency:
            raise SimulatorError(400, "CurrencyMismatch", "refundAmount currency differs")
        if amount + refunded > captured:
            raise SimulatorError(
                400, "TransactionAmountExceeded", "refundAmount exceeds the captured amount"
            )
        charge["refundedAmount"] = price_json(refunded + amount, currency)
        refund_id = f"{charge['chargePermissionId']}-R{secrets.randbelow(10**6):06d}"
        while refund_id in self.refunds:
            refund_id = f"{charge['chargePermissionId']}-R{secrets.randbelow(10**6):06d}"
        now = self._now()
        self.refunds[refund_id] = {
            "refundId": refund_id,
            "chargeId": charge_id,
            "refundAmount": price_json(amount, currency),
            "softDescriptor": request.get("softDescriptor"),
            "creationTimestamp": amz_timestamp(now),
            "statusDetails": self._status("RefundInitiated"),
            "releaseEnvironment": env,
        }
        self._refund_meta[refund_id] = _RefundMeta(environment=env, refund_at=now + REFUND_DELAY)
        self._emit("REFUND", refund_id, charge["chargePermissionId"], "STATE_CHANGE")
        return copy.deepcopy(self.refunds[refund_id])

    def get_refund(self, env: str, refund_id: str) -> JSONObject:
        return copy.deepcopy(self._lookup(self.refunds, self._refund_meta, env, refund_id))
