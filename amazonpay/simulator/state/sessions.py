"""The Checkout Session state machine: Open -> Completed | Canceled (docs/amazon-pay-api.md
sections 4, 5.2 and 11), with the buyer's choice on the hosted page and the 24 h expiry."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from amazonpay.simulator.state.charges import Charges
from amazonpay.simulator.state.core import (
    Core,
    JSONObject,
    SimulatorError,
    amz_timestamp,
    find,
    merge,
    object_body,
    parse_price,
    same_price,
)
from amazonpay.simulator.state.permissions import Permissions, payment_descriptor

SESSION_LIFETIME = timedelta(hours=24)  # section 4 / 5.2: Open sessions cancel after 24 h

# The buyer's choices on the hosted page (section 11 sandbox payment methods).
PAYMENT_METHODS: dict[str, str] = {
    "1111": "success",
    "3064": "BuyerCanceled",
    "3434": "Declined",
    "0701": "pending",
    "4354": "pending-declined",
}
OUTCOMES = ("success", "BuyerCanceled", "Declined", "pending", "pending-declined", "AmazonRejected")
# The card a buyer's successful outcome leaves in the wallet (section 11).
_CARDS = {"success": "1111", "pending": "0701", "pending-declined": "4354"}
_PENDING_CARDS = ("pending", "pending-declined")

_UPDATABLE = frozenset(
    {
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
)

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


@dataclass
class SessionRecord:
    body: JSONObject
    environment: str
    created: datetime
    hosted_base_url: str | None = None  # where amazonPayRedirectUrl points
    outcome: str | None = None  # the buyer's card once chosen: a key of _CARDS


def _new_session(
    session_id: str, env: str, permission_type: str, store_id: Any, now: datetime
) -> JSONObject:
    """Every field of section 4, null where unset."""
    return {
        "checkoutSessionId": session_id,
        "webCheckoutDetails": {
            "checkoutReviewReturnUrl": None,
            "checkoutResultReturnUrl": None,
            "checkoutCancelUrl": None,
            "amazonPayRedirectUrl": None,
            "checkoutMode": None,
        },
        "productType": "PayAndShip",
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
        "statusDetails": None,
        "constraints": [],
        "creationTimestamp": amz_timestamp(now),
        "expirationTimestamp": amz_timestamp(now + SESSION_LIFETIME),
        "chargePermissionId": None,
        "chargeId": None,
        "storeId": store_id,
        "deliverySpecifications": None,
        "addressDetails": None,
        "scopes": None,
        "providerMetadata": {"providerReferenceId": None},
        "platformId": None,
        "releaseEnvironment": env,
        "checkoutButtonText": None,
    }


def _setup_only(session: JSONObject) -> bool:
    metadata = session.get("paymentMethodOnFileMetadata") or {}
    return bool(
        session["chargePermissionType"] == "PaymentMethodOnFile" and metadata.get("setupOnly")
    )


def _validate_prices(details: Any) -> None:
    if isinstance(details, Mapping):
        for price_field in ("chargeAmount", "totalOrderAmount"):
            if details.get(price_field) is not None:
                parse_price(details[price_field], f"paymentDetails.{price_field}")


class Sessions:
    """Checkout Sessions by id, with the transitions of section 4."""

    def __init__(self, core: Core, permissions: Permissions, charges: Charges) -> None:
        self._core = core
        self._permissions = permissions
        self._charges = charges
        self.records: dict[str, SessionRecord] = {}

    def tick(self) -> None:
        now = self._core.now()
        for record in self.records.values():
            session = record.body
            if (
                session["statusDetails"]["state"] == "Open"
                and now >= record.created + SESSION_LIFETIME
            ):
                self._cancel(session, "Expired")

    def _cancel(self, session: JSONObject, reason: str) -> None:
        session["statusDetails"] = self._core.status("Canceled", reason)
        session["webCheckoutDetails"]["amazonPayRedirectUrl"] = None

    def create(self, env: str, body: Any, *, hosted_base_url: str) -> JSONObject:
        """Create Checkout Session (section 5.1), from the API or the button's payloadJSON."""
        payload = object_body(body)
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
        _validate_prices(details)
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
        now = self._core.now()
        session = _new_session(session_id, env, permission_type, payload["storeId"], now)
        session["productType"] = payload.get("productType", "PayAndShip")
        session["statusDetails"] = self._core.status("Open")
        merge(
            session,
            {
                k: v
                for k, v in payload.items()
                if k not in ("storeId", "chargePermissionType", "checkoutSessionId")
            },
        )
        record = SessionRecord(
            body=session, environment=env, created=now, hosted_base_url=hosted_base_url
        )
        self.records[session_id] = record
        self._refresh_constraints(record)
        return copy.deepcopy(session)

    def _refresh_constraints(self, record: SessionRecord) -> None:
        # Constraint ids and texts as seen in real responses (section 4).
        session = record.body
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
        if not _setup_only(session) and not details.get("chargeAmount"):
            constraints.append(
                {"constraintId": "ChargeAmountNotSet", "description": "chargeAmount is not set."}
            )
        if not details.get("paymentIntent"):
            constraints.append(
                {"constraintId": "PaymentIntentNotSet", "description": "paymentIntent is not set."}
            )
        if record.outcome is None:
            constraints.append(
                {
                    "constraintId": "BuyerNotAssociated",
                    "description": "The buyer has not been associated with the Checkout Session.",
                }
            )
        session["constraints"] = constraints
        # Section 4: amazonPayRedirectUrl is only returned once every constraint is cleared.
        web["amazonPayRedirectUrl"] = (
            f"{record.hosted_base_url}/hosted/{session['checkoutSessionId']}"
            if not constraints and record.hosted_base_url is not None
            else None
        )

    def get(self, env: str, session_id: str) -> JSONObject:
        return copy.deepcopy(find(self.records, env, session_id).body)

    def for_buyer(self, session_id: str) -> JSONObject | None:
        """The session as the hosted page sees it, in any environment."""
        found = self.records.get(session_id)
        return copy.deepcopy(found.body) if found is not None else None

    def update(self, env: str, session_id: str, body: Any, *, hosted_base_url: str) -> JSONObject:
        record = find(self.records, env, session_id)
        session = record.body
        patch = object_body(body)
        _require_open(session)
        _validate_prices(patch.get("paymentDetails"))
        unknown = sorted(set(patch) - _UPDATABLE)
        if unknown:
            raise SimulatorError(
                400, "UnrecognizedField", f"The field {unknown[0]} is not allowed in this request"
            )
        merge(session, patch)
        session["statusDetails"]["lastUpdatedTimestamp"] = self._core.stamp()
        record.hosted_base_url = hosted_base_url
        self._refresh_constraints(record)
        return copy.deepcopy(session)

    def set_buyer_outcome(self, session_id: str, outcome: str) -> JSONObject:
        """Record the buyer's choice on the hosted page (section 11 test payment methods)."""
        record = self.records.get(session_id)
        if record is None:
            raise SimulatorError(
                404, "ResourceNotFound", f"Checkout Session {session_id} not found"
            )
        if outcome not in OUTCOMES:
            raise SimulatorError(400, "InvalidParameterValue", f"unknown outcome {outcome!r}")
        session = record.body
        if session["statusDetails"]["state"] != "Open":
            raise SimulatorError(
                422, "InvalidCheckoutSessionStatus", "The Checkout Session is no longer Open"
            )
        if outcome in _CARDS:
            record.outcome = outcome
            session["buyer"] = copy.deepcopy(_SIMULATED_BUYER)
            session["billingAddress"] = copy.deepcopy(_SIMULATED_ADDRESS)
            if session["productType"] != "PayOnly":
                session["shippingAddress"] = copy.deepcopy(_SIMULATED_ADDRESS)
            session["paymentPreferences"] = [
                {"paymentDescriptor": payment_descriptor(_CARDS[outcome])}
            ]
            session["statusDetails"]["lastUpdatedTimestamp"] = self._core.stamp()
            self._refresh_constraints(record)
        else:
            self._cancel(session, outcome)
        return copy.deepcopy(session)

    def complete(
        self,
        env: str,
        session_id: str,
        body: Any,
        *,
        force_pending: bool = False,
        simulation: str | None = None,
    ) -> tuple[int, JSONObject]:
        """Complete Checkout Session (section 5.2): 200, or 202 while authorization is pending."""
        record = find(self.records, env, session_id)
        session = record.body
        request = object_body(body)
        _require_open(session)
        if record.outcome is None:
            # Documented choice: no buyer yet is a status error, not a constraint list.
            raise SimulatorError(
                422,
                "InvalidCheckoutSessionStatus",
                "The buyer has not completed checkout on the Amazon Pay page for this "
                "Checkout Session (constraint BuyerNotAssociated)",
            )
        details = session["paymentDetails"]
        setup_only = _setup_only(session)
        _check_amounts(request, details, setup_only)
        if simulation in ("BuyerCanceled", "Declined", "AmazonCanceled"):
            # Section 11: the simulation string overrides the buyer's payment method.
            self._cancel(session, simulation)
            _require_open(session)
        intent = details.get("paymentIntent")
        authorizes = not setup_only and intent in ("Authorize", "AuthorizeWithCapture")
        can_wait = details.get("canHandlePendingAuthorization") is True
        if simulation == "AuthorizationInitiated" and not (authorizes and can_wait):
            raise SimulatorError(
                400,
                "InvalidSandboxSimulationSpecified",
                "AuthorizationInitiated needs paymentIntent Authorize or AuthorizeWithCapture "
                "and canHandlePendingAuthorization true",
            )
        pending = authorizes and (
            force_pending
            or record.outcome in _PENDING_CARDS
            or simulation == "AuthorizationInitiated"
        )
        # Section 11: 4354 declines 30 s later, unless a simulation string overrides the card.
        declines_later = record.outcome == "pending-declined" and simulation is None
        if pending and not can_wait:
            # Sections 5.2 and 11: only a merchant that can handle a pending authorization gets
            # one; otherwise the slow authorization is declined and the checkout fails.
            self._cancel(session, "Declined")
            session["statusDetails"]["reasonDescription"] = (
                "The authorization did not complete in time and canHandlePendingAuthorization "
                "was not set (TransactionTimedOut)."
            )
            _require_open(session)
        permission_id = self._permissions.create(
            env, session, card=_CARDS.get(record.outcome, "1111")
        )
        if authorizes:
            amount, currency = parse_price(details["chargeAmount"], "chargeAmount")
            session["chargeId"] = self._charges.new(
                env,
                permission_id,
                amount,
                currency,
                capture=intent == "AuthorizeWithCapture",
                pending=pending,
                settle_to="HardDeclined" if declines_later else "Authorized",
                merchant_metadata=session["merchantMetadata"],
                soft_descriptor=details.get("softDescriptor"),
            )
        session["chargePermissionId"] = permission_id
        session["statusDetails"] = self._core.status("Completed")
        session["constraints"] = []
        session["webCheckoutDetails"]["amazonPayRedirectUrl"] = None
        return (202 if pending else 200), copy.deepcopy(session)


def _check_amounts(request: JSONObject, details: JSONObject, setup_only: bool) -> None:
    """Section 5.2: the amounts sent must equal the session's (Decimal comparison)."""
    if not setup_only or request.get("chargeAmount") is not None:
        if request.get("chargeAmount") is None:
            raise SimulatorError(
                400, "MissingParameterValue", "chargeAmount is a required parameter"
            )
        expected = details.get("chargeAmount")
        if expected is None or not same_price(request["chargeAmount"], expected, "chargeAmount"):
            raise SimulatorError(
                409,
                "AmountMismatch",
                "The chargeAmount does not match the chargeAmount of the Checkout Session",
            )
    if details.get("totalOrderAmount") is not None and not setup_only:
        sent = request.get("totalOrderAmount")
        if sent is None or not same_price(sent, details["totalOrderAmount"], "totalOrderAmount"):
            raise SimulatorError(
                409,
                "AmountMismatch",
                "The totalOrderAmount does not match the totalOrderAmount of the Checkout Session",
            )


def _require_open(session: JSONObject) -> None:
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
