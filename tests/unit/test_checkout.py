"""The return-URL use case against Amazon's HTTP (mocked with `responses`) and a real store.

The store is SQLite and PostgreSQL in turn (test ids `[sqlite]` / `[postgres]`).

Every outcome the buyer can see, and the rule that bad input never reaches Amazon.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses
from cryptography.hazmat.primitives.asymmetric import rsa
from responses import matchers

from amazonpay.client import AmazonPayClient, idempotency_key_for
from storefront.checkout import OutcomeKind, ReconcileReport, ReturnHandler, ReturnOutcome
from storefront.db import PendingCheckout, Store
from storefront.states import CheckoutKind, ClaimState

API = "https://pay-api.test/v2"
SESSION_A = "5c4a0a43-4b34-4d85-9e3b-2f2f1c0e9a11"
SESSION_B = "7d3f1b2e-8c9a-4e5f-a1b2-c3d4e5f60789"


class Clock:
    """A hand-moved clock; `sleep` advances it so polling loops end without real waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def amazon() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def handler(
    private_key: rsa.RSAPrivateKey, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> ReturnHandler:
    client = AmazonPayClient(
        public_key_id="SANDBOX-UNITTEST",
        private_key=private_key,
        endpoint="https://pay-api.test",
        sleep=lambda _seconds: None,
    )
    return ReturnHandler(client, store, clock=clock, sleep=clock.advance, poll_interval=1.0)


def make_pending(
    store: Store,
    clock: Clock,
    kind: CheckoutKind = CheckoutKind.WALLET_SETUP,
    amount: str | None = None,
    buyer: str = "b",
) -> PendingCheckout:
    return store.checkouts.find_or_create(
        buyer_id=buyer * 22 if len(buyer) == 1 else buyer,
        kind=kind,
        amount=None if amount is None else Decimal(amount),
        currency="USD",
        items=[] if amount is None else [{"id": "mug", "quantity": 1}],
        now=clock(),
        reuse_window=timedelta(hours=1),
    )


def session_json(
    session_id: str,
    pending: PendingCheckout,
    *,
    state: str = "Open",
    reason_code: str | None = None,
    reference: str | None = None,
    completed: bool = False,
    charge_permission_type: str | None = None,
    amount: str | None = None,
    setup_only: bool = True,
) -> dict[str, Any]:
    wallet = pending.kind == CheckoutKind.WALLET_SETUP
    body: dict[str, Any] = {
        "checkoutSessionId": session_id,
        "statusDetails": {"state": state, "reasonCode": reason_code},
        "merchantMetadata": {"merchantReferenceId": reference or pending.reference},
        "chargePermissionType": charge_permission_type
        or ("PaymentMethodOnFile" if wallet else "OneTime"),
    }
    if wallet:
        body["paymentMethodOnFileMetadata"] = {"setupOnly": setup_only}
        body["paymentDetails"] = {"paymentIntent": "Confirm"}
    else:
        body["paymentDetails"] = {
            "paymentIntent": "AuthorizeWithCapture",
            "chargeAmount": {"amount": amount or str(pending.amount), "currencyCode": "USD"},
        }
    if completed or state == "Completed":
        body["statusDetails"]["state"] = "Completed"
        body["chargePermissionId"] = "S01-1234567-7654321"
        body["chargeId"] = None if wallet else "S01-1234567-7654321-C000001"
    return body


def error_body(reason: str) -> dict[str, str]:
    return {"reasonCode": reason, "message": "Amazon's own words, never shown to the buyer"}


def get_url(session_id: str) -> str:
    return f"{API}/checkoutSessions/{session_id}"


def complete_url(session_id: str) -> str:
    return f"{API}/checkoutSessions/{session_id}/complete"


def complete_calls(amazon: responses.RequestsMock) -> list[Any]:
    return [c for c in amazon.calls if c.request.url.endswith("/complete")]


def returned(handler: ReturnHandler, session_id: str, pending: PendingCheckout) -> ReturnOutcome:
    return handler.handle_return([session_id], [pending.reference])


def amazon_completes(
    amazon: responses.RequestsMock, pending: PendingCheckout, **complete: Any
) -> None:
    """Amazon shows SESSION_A open for `pending` and answers its Complete with the session
    completed; `complete` (status=, match=) goes to that Complete route."""
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(
        complete_url(SESSION_A), json=session_json(SESSION_A, pending, completed=True), **complete
    )


# -- success -------------------------------------------------------------------------------------


def test_wallet_setup_completes_with_empty_body_and_stable_key(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon_completes(
        amazon,
        pending,
        match=[
            matchers.json_params_matcher({}),
            matchers.header_matcher({"x-amz-pay-idempotency-key": idempotency_key_for(SESSION_A)}),
        ],
    )

    outcome = returned(handler, SESSION_A, pending)

    assert outcome == ReturnOutcome(
        OutcomeKind.SUCCESS, CheckoutKind.WALLET_SETUP, pending.reference, "completed"
    )
    methods = store.wallets.for_buyer(pending.buyer_id)
    assert [m.charge_permission_id for m in methods] == ["S01-1234567-7654321"]
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.COMPLETED


def test_one_time_completes_with_the_recorded_amount_and_records_the_order(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "33.99")
    amazon_completes(
        amazon,
        pending,
        match=[
            matchers.json_params_matcher(
                {"chargeAmount": {"amount": "33.99", "currencyCode": "USD"}}
            )
        ],
    )

    outcome = returned(handler, SESSION_A, pending)

    assert outcome.kind is OutcomeKind.SUCCESS
    order = store.orders.get(pending.reference)
    assert order is not None
    assert (order.amount, order.charge_id) == (Decimal("33.99"), "S01-1234567-7654321-C000001")


def test_refresh_after_success_calls_amazon_no_more(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon_completes(amazon, pending)
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.SUCCESS
    calls = len(amazon.calls)

    for _ in range(3):
        assert returned(handler, SESSION_A, pending).kind is OutcomeKind.SUCCESS

    assert len(amazon.calls) == calls == 2


def test_second_session_for_a_paid_checkout_is_never_completed(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "10.00")
    amazon_completes(amazon, pending)
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.SUCCESS

    outcome = returned(handler, SESSION_B, pending)  # the same cart paid again in a second tab

    assert outcome.kind is OutcomeKind.SUCCESS
    assert not [c for c in amazon.calls if SESSION_B in c.request.url]


def test_session_completed_before_a_crash_is_recorded_as_success(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending, state="Completed"))

    outcome = returned(handler, SESSION_A, pending)

    assert outcome.kind is OutcomeKind.SUCCESS
    assert complete_calls(amazon) == []
    assert store.wallets.for_buyer(pending.buyer_id)


@pytest.mark.parametrize("reason", ["InvalidCheckoutSessionStatus", "CheckoutSessionCanceled"])
def test_conflict_then_get_completed_is_success(
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    reason: str,
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending, state="Completed"))
    amazon.post(complete_url(SESSION_A), status=422, json=error_body(reason))

    outcome = returned(handler, SESSION_A, pending)

    assert outcome.kind is OutcomeKind.SUCCESS
    assert len(complete_calls(amazon)) == 1


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["BuyerCanceled", "Declined", "Expired", "AmazonRejected"])
@pytest.mark.parametrize("kind", [CheckoutKind.WALLET_SETUP, CheckoutKind.ONE_TIME])
def test_canceled_session_is_a_failure_of_its_kind(
    *,
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    reason: str,
    kind: str,
) -> None:
    pending = make_pending(
        store, clock, kind, None if kind == CheckoutKind.WALLET_SETUP else "12.00"
    )
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.get(
        get_url(SESSION_A),
        json=session_json(SESSION_A, pending, state="Canceled", reason_code=reason),
    )
    amazon.post(complete_url(SESSION_A), status=422, json=error_body("CheckoutSessionCanceled"))

    outcome = returned(handler, SESSION_A, pending)

    assert (outcome.kind, outcome.checkout_kind, outcome.reason) == (
        OutcomeKind.FAILURE,
        kind,
        reason,
    )
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.FAILED
    # The pending checkout opens again so the buyer can simply retry.
    again = store.checkouts.get(pending.reference)
    assert again is not None
    assert again.state == "open"


def test_session_already_canceled_is_a_failure_without_complete(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(
        get_url(SESSION_A),
        json=session_json(SESSION_A, pending, state="Canceled", reason_code="BuyerCanceled"),
    )

    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.FAILURE
    assert complete_calls(amazon) == []


def test_amount_mismatch_from_amazon_is_a_failure(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "20.00")
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(complete_url(SESSION_A), status=409, json=error_body("AmountMismatch"))

    outcome = returned(handler, SESSION_A, pending)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "AmountMismatch")


@pytest.mark.parametrize(
    ("kind", "amount", "overrides", "reason"),
    [
        (CheckoutKind.ONE_TIME, "20.00", {"amount": "0.01"}, "amount-mismatch"),
        (CheckoutKind.WALLET_SETUP, None, {"charge_permission_type": "OneTime"}, "type-mismatch"),
        (CheckoutKind.WALLET_SETUP, None, {"setup_only": False}, "setup-only-mismatch"),
        (CheckoutKind.ONE_TIME, "20.00", {"charge_permission_type": "Recurring"}, "type-mismatch"),
    ],
)
def test_session_not_matching_the_record_is_refused_before_complete(
    *,
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    kind: str,
    amount: str | None,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    pending = make_pending(store, clock, kind, amount)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending, **overrides))

    outcome = returned(handler, SESSION_A, pending)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, reason)
    assert complete_calls(amazon) == []


@pytest.mark.parametrize(("status", "reason"), [(400, "InvalidParameterValue"), (403, None)])
def test_client_errors_from_complete_are_failures(
    *,
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    status: int,
    reason: str | None,
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(complete_url(SESSION_A), status=status, json=error_body(reason or "x"))

    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.FAILURE


def test_hijacked_session_id_is_refused_and_the_owner_can_still_complete(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    victim = make_pending(store, clock, buyer="a")
    attacker = make_pending(store, clock, buyer="z")
    amazon_completes(amazon, victim)

    # The attacker replays the victim's session id on the attacker's own return URL.
    outcome = returned(handler, SESSION_A, attacker)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "reference-mismatch")
    assert complete_calls(amazon) == []
    assert store.ledger.get(SESSION_A) is None  # nothing blocks the real owner

    assert returned(handler, SESSION_A, victim).kind is OutcomeKind.SUCCESS
    assert store.wallets.for_buyer(victim.buyer_id)
    assert not store.wallets.for_buyer(attacker.buyer_id)


def test_session_recorded_for_another_checkout_is_refused_without_calling_amazon(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    victim = make_pending(store, clock, buyer="a")
    attacker = make_pending(store, clock, buyer="z")
    amazon_completes(amazon, victim)
    assert returned(handler, SESSION_A, victim).kind is OutcomeKind.SUCCESS
    calls = len(amazon.calls)

    outcome = returned(handler, SESSION_A, attacker)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "foreign-session")
    assert len(amazon.calls) == calls


def test_pending_checkout_older_than_24_hours_is_not_completed(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    clock.advance(24 * 3600 + 1)

    outcome = returned(handler, SESSION_A, pending)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "expired")
    assert len(amazon.calls) == 0


# -- outcome not known yet ------------------------------------------------------------------------


def test_authorization_pending_then_authorized_on_refresh(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "15.00")
    amazon_completes(amazon, pending, status=202)
    charge_url = f"{API}/charges/S01-1234567-7654321-C000001"
    amazon.get(
        charge_url, json={"chargeId": "x", "statusDetails": {"state": "AuthorizationInitiated"}}
    )
    amazon.get(charge_url, json={"chargeId": "x", "statusDetails": {"state": "Authorized"}})

    first = returned(handler, SESSION_A, pending)
    assert (first.kind, first.reason) == (OutcomeKind.PENDING, "authorization-pending")
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.PENDING
    assert store.orders.get(pending.reference) is None

    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.PENDING  # still initiated
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.SUCCESS
    assert store.orders.get(pending.reference) is not None
    assert len(complete_calls(amazon)) == 1


def test_authorization_pending_then_declined_is_a_failure(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "15.00")
    amazon_completes(amazon, pending, status=202)
    amazon.get(
        f"{API}/charges/S01-1234567-7654321-C000001",
        json={
            "chargeId": "x",
            "statusDetails": {"state": "Declined", "reasonCode": "HardDeclined"},
        },
    )

    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.PENDING
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.FAILURE


def test_lost_response_is_pending_then_reconciled_on_refresh(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    # Amazon applied the Complete but every answer was lost on the way back.
    amazon.post(complete_url(SESSION_A), body=requests.ConnectionError("reset by peer"))

    first = returned(handler, SESSION_A, pending)

    assert first.kind is OutcomeKind.PENDING
    assert not store.wallets.for_buyer(pending.buyer_id)

    amazon.replace(
        responses.GET, get_url(SESSION_A), json=session_json(SESSION_A, pending, state="Completed")
    )
    second = returned(handler, SESSION_A, pending)

    assert second.kind is OutcomeKind.SUCCESS
    assert store.wallets.for_buyer(pending.buyer_id)


def test_refresh_of_a_pending_open_session_completes_again_with_the_same_key(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(complete_url(SESSION_A), status=503, json=error_body("ServiceUnavailable"))
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.PENDING

    amazon.replace(
        responses.POST,
        complete_url(SESSION_A),
        json=session_json(SESSION_A, pending, completed=True),
    )
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.SUCCESS

    keys = {c.request.headers["x-amz-pay-idempotency-key"] for c in complete_calls(amazon)}
    assert keys == {idempotency_key_for(SESSION_A)}


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "InternalServerError"), (503, "ServiceUnavailable"), (429, "TooManyRequests")],
)
def test_server_errors_after_retries_are_pending_never_failure(
    *,
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    status: int,
    reason: str,
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(complete_url(SESSION_A), status=status, json=error_body(reason))

    outcome = returned(handler, SESSION_A, pending)

    assert outcome.kind is OutcomeKind.PENDING
    assert len(complete_calls(amazon)) > 1  # the client retried with the same key


def test_amazon_unreachable_on_get_is_pending(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), body=requests.ConnectionError("refused"))

    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.PENDING
    assert complete_calls(amazon) == []


# -- concurrency: one winner, a dead winner's lease is taken over ----------------------------------


def test_a_live_claim_makes_others_wait_then_show_pending(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    store.ledger.claim(
        SESSION_A, pending.reference, owner="other", now=clock(), lease=timedelta(hours=1)
    )

    outcome = returned(handler, SESSION_A, pending)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.PENDING, "claimed-elsewhere")
    assert len(amazon.calls) == 0


def test_an_expired_lease_is_taken_over_with_the_same_idempotency_key(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    store.ledger.claim(
        SESSION_A, pending.reference, owner="crashed", now=clock(), lease=timedelta(seconds=5)
    )
    amazon_completes(
        amazon,
        pending,
        match=[
            matchers.header_matcher({"x-amz-pay-idempotency-key": idempotency_key_for(SESSION_A)})
        ],
    )

    outcome = returned(handler, SESSION_A, pending)  # polls past the 5 s lease, then takes over

    assert outcome.kind is OutcomeKind.SUCCESS
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.attempts == 2


# -- bad input never reaches Amazon ---------------------------------------------------------------


@pytest.mark.parametrize(
    "session_ids",
    [
        [],
        [""],
        ["../"],
        ["../../checkoutSessions/x"],
        ["%2e%2e%2f"],
        ["abc%0d%0aX-Injected:1"],
        ["abc\r\nX-Injected: 1"],
        ["a" * 1000],
        [SESSION_A, SESSION_B],
        [SESSION_A, SESSION_A],
        ["short"],
        ["-" + SESSION_A[1:]],
        [SESSION_A + "/complete"],
        [SESSION_A + "?x=1"],
        [SESSION_A + " "],
        ["5c4a0a43\x004b34"],
        ["\uff46\uff55\uff4c\uff4c-\uff10\uff11\uff12\uff13\uff14\uff15\uff16"],
    ],
    ids=lambda v: repr(v)[:40],
)
def test_malformed_session_ids_never_reach_amazon(
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    session_ids: list[str],
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "5.00")

    outcome = handler.handle_return(session_ids, [pending.reference])

    assert (outcome.kind, outcome.checkout_kind) == (OutcomeKind.FAILURE, CheckoutKind.ONE_TIME)
    assert len(amazon.calls) == 0
    assert store.ledger.get(SESSION_A) is None


@pytest.mark.parametrize(
    "refs",
    [[], [""], ["../"], ["x" * 1000], ["A" * 22, "B" * 22], ["unknownunknownunknown1"], ["A" * 22]],
    ids=lambda v: repr(v)[:40],
)
def test_missing_malformed_or_unknown_reference_never_reaches_amazon(
    handler: ReturnHandler, amazon: responses.RequestsMock, refs: list[str]
) -> None:
    outcome = handler.handle_return([SESSION_A], refs)

    assert (outcome.kind, outcome.checkout_kind) == (OutcomeKind.FAILURE, CheckoutKind.WALLET_SETUP)
    assert len(amazon.calls) == 0


def test_logs_never_carry_amazons_message(
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pending = make_pending(store, clock)
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(
        complete_url(SESSION_A),
        status=400,
        json=error_body("InvalidParameterValue"),
        headers={"x-amz-pay-request-id": "req-123"},
    )
    caplog.set_level("INFO", logger="storefront")

    returned(handler, SESSION_A, pending)

    text = caplog.text
    assert "InvalidParameterValue" in text
    assert "req-123" in text
    assert "never shown" not in "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("storefront")
    )
    assert json.dumps(session_json(SESSION_A, pending)) not in text


# A sparse session object (the seed's sample answer is mostly nulls) must not fail a buyer who
# paid: a field Amazon left out is not a mismatch, Complete enforces amount and type itself.
SEED_LIKE_COMPLETED = {
    "checkoutSessionId": SESSION_A,
    "webCheckoutDetails": None,
    "chargePermissionType": "PaymentMethodOnFile",
    "paymentDetails": None,
    "merchantMetadata": None,
    "statusDetails": {"state": "Completed", "reasonCode": None},
    "chargePermissionId": "S01-5105180-3221187",
    "chargeId": None,
}


@pytest.mark.parametrize(
    ("kind", "amount"), [(CheckoutKind.WALLET_SETUP, None), (CheckoutKind.ONE_TIME, "20.00")]
)
def test_sparse_session_objects_are_completed_with_the_recorded_terms(
    *,
    handler: ReturnHandler,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
    kind: str,
    amount: str | None,
) -> None:
    pending = make_pending(store, clock, kind, amount)
    amazon.get(get_url(SESSION_A), json={"checkoutSessionId": SESSION_A, "merchantMetadata": None})
    amazon.post(complete_url(SESSION_A), json=SEED_LIKE_COMPLETED)

    outcome = returned(handler, SESSION_A, pending)

    assert outcome.kind is OutcomeKind.SUCCESS
    (call,) = complete_calls(amazon)
    expected = {} if amount is None else {"chargeAmount": {"amount": amount, "currencyCode": "USD"}}
    assert json.loads(call.request.body) == expected


def test_reference_in_the_return_url_identifies_the_owner_when_metadata_is_missing(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    victim = make_pending(store, clock, buyer="a")
    attacker = make_pending(store, clock, buyer="z")
    victim_url = f"https://shop.test/checkout/return?ref={victim.reference}"
    amazon.get(
        get_url(SESSION_A),
        json={
            "checkoutSessionId": SESSION_A,
            "statusDetails": {"state": "Open"},
            "merchantMetadata": None,
            "webCheckoutDetails": {"checkoutResultReturnUrl": victim_url},
        },
    )

    outcome = returned(handler, SESSION_A, attacker)

    assert (outcome.kind, outcome.reason) == (OutcomeKind.FAILURE, "reference-mismatch")
    assert complete_calls(amazon) == []


# -- reconciliation: claims the buyer left behind ------------------------------------------------

CHARGE_ID = "S01-1234567-7654321-C000001"


def left_pending(
    handler: ReturnHandler, amazon: responses.RequestsMock, pending: PendingCheckout
) -> None:
    """The buyer returned, Amazon did not answer Complete (5xx after retries), the tab closed."""
    amazon.get(get_url(SESSION_A), json=session_json(SESSION_A, pending))
    amazon.post(complete_url(SESSION_A), status=503, json=error_body("ServiceUnavailable"))
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.PENDING
    claim = handler.store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.PENDING


def test_reconcile_completes_a_pending_open_session_with_the_same_key(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    left_pending(handler, amazon, pending)
    amazon.replace(
        responses.POST,
        complete_url(SESSION_A),
        json=session_json(SESSION_A, pending, completed=True),
    )
    clock.advance(300)

    report = handler.reconcile(clock())

    assert report.summary() == "reconciled 1: 1 completed, 0 failed, 0 still pending"
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.COMPLETED
    assert [m.charge_permission_id for m in store.wallets.for_buyer(pending.buyer_id)] == [
        "S01-1234567-7654321"
    ]
    keys = {c.request.headers["x-amz-pay-idempotency-key"] for c in complete_calls(amazon)}
    assert keys == {idempotency_key_for(SESSION_A)}
    # The buyer's refresh now shows the recorded success without calling Amazon.
    calls = len(amazon.calls)
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.SUCCESS
    assert len(amazon.calls) == calls


def test_reconcile_records_a_canceled_session_as_failure(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "15.00")
    left_pending(handler, amazon, pending)
    amazon.replace(
        responses.GET,
        get_url(SESSION_A),
        json=session_json(SESSION_A, pending, state="Canceled", reason_code="BuyerCanceled"),
    )
    completes = len(complete_calls(amazon))

    report = handler.reconcile(clock())

    assert report.summary() == "reconciled 1: 0 completed, 1 failed, 0 still pending"
    assert [(r.kind, r.reason) for r in report.results] == [(OutcomeKind.FAILURE, "BuyerCanceled")]
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert (claim.status, claim.reason) == (ClaimState.FAILED, "BuyerCanceled")
    assert store.orders.get(pending.reference) is None
    reopened = store.checkouts.get(pending.reference)
    assert reopened is not None
    assert reopened.state == "open"  # the buyer may pay again
    assert len(complete_calls(amazon)) == completes


def test_reconcile_takes_over_a_crashed_claim_and_completes_with_the_same_key(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    # A worker claimed the session, then died before writing anything else.
    crashed = store.ledger.claim(
        SESSION_A,
        pending.reference,
        owner="crashed",
        now=clock(),
        lease=handler.lease,
        start_processing=True,
    )
    assert (crashed.won, crashed.processing) == (True, True)
    amazon_completes(
        amazon,
        pending,
        match=[
            matchers.header_matcher({"x-amz-pay-idempotency-key": idempotency_key_for(SESSION_A)})
        ],
    )

    assert handler.reconcile(clock()).results == ()  # the lease is still live
    assert len(amazon.calls) == 0
    clock.advance(handler.lease.total_seconds() + 1)
    report = handler.reconcile(clock())

    assert report.summary() == "reconciled 1: 1 completed, 0 failed, 0 still pending"
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert (claim.status, claim.attempts) == (ClaimState.COMPLETED, 2)
    assert len(complete_calls(amazon)) == 1


def test_reconcile_fails_a_session_still_open_after_24_hours_without_completing(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock)
    left_pending(handler, amazon, pending)
    completes = len(complete_calls(amazon))
    clock.advance(24 * 3600 + 1)

    report = handler.reconcile(clock())

    assert [(r.kind, r.reason) for r in report.results] == [(OutcomeKind.FAILURE, "expired")]
    assert len(complete_calls(amazon)) == completes  # Amazon cancels it; we never complete it
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.FAILED


def test_reconcile_after_a_202_reads_the_charge_and_records_success(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "15.00")
    amazon_completes(amazon, pending, status=202)
    charge_url = f"{API}/charges/{CHARGE_ID}"
    amazon.get(charge_url, json={"chargeId": CHARGE_ID, "statusDetails": {"state": "Authorized"}})
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.PENDING

    report = handler.reconcile(clock())

    assert [(r.kind, r.reason) for r in report.results] == [(OutcomeKind.SUCCESS, "authorized")]
    order = store.orders.get(pending.reference)
    assert order is not None
    assert order.charge_id == CHARGE_ID
    assert len(complete_calls(amazon)) == 1
    assert [c.request.url for c in amazon.calls if "/charges/" in c.request.url] == [charge_url]


def test_reconcile_objects_settles_only_the_claims_an_ipn_names(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    pending = make_pending(store, clock, CheckoutKind.ONE_TIME, "15.00")
    amazon_completes(amazon, pending, status=202)
    amazon.get(
        f"{API}/charges/{CHARGE_ID}",
        json={"chargeId": CHARGE_ID, "statusDetails": {"state": "Authorized"}},
    )
    assert returned(handler, SESSION_A, pending).kind is OutcomeKind.PENDING
    calls = len(amazon.calls)

    assert handler.reconcile_objects(["S01-0000000-0000000"], clock()).results == ()
    assert handler.reconcile_objects([], clock()).results == ()
    assert len(amazon.calls) == calls
    report = handler.reconcile_objects([CHARGE_ID, "S01-1234567-7654321"], clock())

    assert report.summary() == "reconciled 1: 1 completed, 0 failed, 0 still pending"


def test_reconcile_with_nothing_undecided_calls_amazon_not_at_all(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    paid = make_pending(store, clock, buyer="p")
    amazon_completes(amazon, paid)
    assert returned(handler, SESSION_A, paid).kind is OutcomeKind.SUCCESS
    canceled = make_pending(store, clock, buyer="c")
    amazon.get(
        get_url(SESSION_B),
        json=session_json(SESSION_B, canceled, state="Canceled", reason_code="Declined"),
    )
    assert returned(handler, SESSION_B, canceled).kind is OutcomeKind.FAILURE
    busy = make_pending(store, clock, buyer="w")
    store.ledger.claim(
        "9e8d7c6b-5a49-4838-b7a6-958473625140",
        busy.reference,
        owner="a-live-worker",
        now=clock(),
        lease=timedelta(seconds=60),
    )
    calls = len(amazon.calls)

    report = handler.reconcile(clock())

    assert report.results == ()
    assert report.summary() == "reconciled 0: 0 completed, 0 failed, 0 still pending"
    assert len(amazon.calls) == calls


def test_reconcile_is_bounded_and_takes_the_stalest_claims_first(
    handler: ReturnHandler, store: Store, clock: Clock, amazon: responses.RequestsMock
) -> None:
    sessions = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
    for i, session_id in enumerate(sessions):
        pending = make_pending(store, clock, buyer=f"buyer-{i}".ljust(22, "x"))
        store.ledger.claim(
            session_id, pending.reference, owner="o", now=clock(), lease=handler.lease
        )
        store.ledger.mark_pending(session_id, reason="complete-unknown", now=clock())
        clock.advance(1)
    amazon.get(re.compile(rf"{API}/checkoutSessions/.*"), body=requests.ConnectionError("down"))

    report = handler.reconcile(clock(), limit=2)

    assert [r.checkout_session_id for r in report.results] == sessions[:2]
    assert report.summary() == "reconciled 2: 0 completed, 0 failed, 2 still pending"
    # The ones just tried go to the back of the queue.
    assert [r.checkout_session_id for r in handler.reconcile(clock(), limit=2).results] == [
        sessions[2],
        sessions[0],
    ]


def test_concurrent_reconcilers_and_a_refresh_complete_once(
    private_key: rsa.RSAPrivateKey,
    store: Store,
    clock: Clock,
    amazon: responses.RequestsMock,
) -> None:
    """Two reconcilers and the buyer's refresh race on one pending claim: one Complete."""

    def new_handler() -> ReturnHandler:  # what another process would have: its own client
        client = AmazonPayClient(
            public_key_id="SANDBOX-UNITTEST",
            private_key=private_key,
            endpoint="https://pay-api.test",
            sleep=lambda _seconds: None,
        )
        return ReturnHandler(
            client,
            store,
            clock=lambda: datetime.now(UTC),
            sleep=time.sleep,
            wait=timedelta(seconds=5),
            poll_interval=0.01,
        )

    clock.now = datetime.now(UTC)
    pending = make_pending(store, clock)
    left_pending(new_handler(), amazon, pending)
    before = len(complete_calls(amazon))

    def slow_complete(_request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        time.sleep(0.3)  # hold the claim while the others arrive
        return 200, {}, json.dumps(session_json(SESSION_A, pending, completed=True))

    amazon.remove(responses.POST, complete_url(SESSION_A))
    amazon.add_callback(responses.POST, complete_url(SESSION_A), callback=slow_complete)
    handlers = [new_handler() for _ in range(3)]
    start = threading.Barrier(3)

    def reconcile(handler: ReturnHandler) -> ReconcileReport:
        start.wait()
        return handler.reconcile()

    def refresh(handler: ReturnHandler) -> ReturnOutcome:
        start.wait()
        return returned(handler, SESSION_A, pending)

    with ThreadPoolExecutor(3) as pool:
        reports = [pool.submit(reconcile, h) for h in handlers[:2]]
        buyer = pool.submit(refresh, handlers[2])
        outcomes = [f.result(timeout=30) for f in reports]
        seen = buyer.result(timeout=30)

    assert len(complete_calls(amazon)) == before + 1
    assert seen.kind in (OutcomeKind.SUCCESS, OutcomeKind.PENDING)  # never a failure
    completed_by_reconcilers = sum(r.count(OutcomeKind.SUCCESS) for r in outcomes)
    assert completed_by_reconcilers + (seen.reason == "completed") == 1
    claim = store.ledger.get(SESSION_A)
    assert claim is not None
    assert claim.status == ClaimState.COMPLETED
    assert returned(handlers[2], SESSION_A, pending).kind is OutcomeKind.SUCCESS
