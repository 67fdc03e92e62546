"""The merchant console under /admin, and the same staff actions as `flask` commands.

Thin views (docs/contract.md "The merchant console"): sign-in with one password, a signed and
expiring staff cookie of its own (path /admin, HttpOnly, SameSite=Strict), every form with the
app-wide CSRF token and, where money moves, a `request_id` made when the page was rendered.
Without ADMIN_PASSWORD every /admin route answers 404; the CLI commands work regardless.
A merchant-initiated charge goes through the buyer's saved-wallet use case (`SavedWalletCharges`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NoReturn

import click
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from amazonpay.errors import DeclineCode
from amazonpay.models import ChargeInitiator, Price
from storefront.captures import ChargeDesk
from storefront.catalog import CURRENCY
from storefront.checkout import OutcomeKind
from storefront.db import Claim, Store
from storefront.db.audit import AuditEntry, StaffAudit
from storefront.db.orders import WalletSetups
from storefront.db.refunds import RefundRows
from storefront.db.throttles import Throttles
from storefront.notifications import CHARGE, REFUND, NotificationRouter
from storefront.refunds import RefundDesk
from storefront.saved_wallet import ChargeOrder, ChargeOutcome, Failure, SavedWalletCharges
from storefront.staff import (
    ACTOR,
    ActionResult,
    Outcome,
    SignIn,
    StaffSignIn,
    money,
    new_request_id,
    parse_amount,
    valid_request_id,
)
from storefront.states import (
    ClaimState,
    OperationKind,
    OrderSource,
    OrderState,
    RefundState,
    WalletState,
)
from storefront.wallet_state import CHARGE_PERMISSION_PATTERN
from storefront.web import Shop

__all__ = [
    "Console",
    "MerchantCharges",
    "bp",
    "console",
    "merchant_charge_reference",
    "reconcile_console",
]

bp = Blueprint("admin", __name__, url_prefix="/admin", cli_group=None)

STAFF_COOKIE = "staff_session"
STAFF_SESSION_LIFETIME = timedelta(hours=8)  # a working day; then sign in again
WRONG_PASSWORD = "Wrong password."  # noqa: S105 - the contract's message, not a secret
_REFERENCE = re.compile(r"\A[A-Za-z0-9_-]{1,40}\Z")
_NOTICE = "admin_notice"


@dataclass
class Console:
    """The console's use cases, built once per app when the blueprint is registered."""

    sign_in: StaffSignIn | None  # None: no ADMIN_PASSWORD, the web console is off (404)
    refunds: RefundDesk
    charges: ChargeDesk
    merchant: MerchantCharges
    audit: StaffAudit
    refund_rows: RefundRows
    wallet_setups: WalletSetups
    sessions: URLSafeTimedSerializer
    fingerprint: str

    def reconcile(self, *, limit: int) -> str:
        """One line for `flask reconcile`: lost answers replayed, refunds settled; "" when
        there was nothing of the console's to do (the return's line stays the only one)."""
        charges = self.charges.reconcile(limit=limit)
        refunds = self.refunds.reconcile(limit=limit)
        if not (charges.replayed or refunds.replayed or refunds.settled or refunds.still_pending):
            return ""
        return f"{charges.summary()}; {refunds.summary()}"


def console() -> Console:
    found: Console = current_app.extensions["admin"]
    return found


def reconcile_console(app: Flask, *, limit: int) -> str:
    """What `flask --app app reconcile` adds for the console's operations."""
    found: Console = app.extensions["admin"]
    return found.reconcile(limit=limit)


@bp.record_once
def _wire(state: BlueprintSetupState) -> None:
    app = state.app
    shop: Shop = app.extensions["shop"]
    store = shop.store
    audit = StaffAudit(store.engine)
    rows = RefundRows(store.engine, store.orders)
    password = app.config.get("ADMIN_PASSWORD")
    secret = str(app.config["SECRET_KEY"]).encode("utf-8")
    sign_in = (
        StaffSignIn(str(password), Throttles(store.engine), audit, clock=shop.now)
        if password
        else None
    )
    app.extensions["admin"] = Console(
        sign_in=sign_in,
        refunds=RefundDesk(shop.client, store, shop.operations, rows, audit, clock=shop.now),
        charges=ChargeDesk(shop.client, store, shop.operations, audit, clock=shop.now),
        merchant=MerchantCharges(
            app.extensions["saved_wallet"].charges,  # registered before us
            store,
            audit,
            # AMAZON_PAY_PAYMENT_INTENT governs saved-wallet charges' captureNow (contract).
            capture_now=app.config["PAYMENT_INTENT"].capture_now,
            clock=shop.now,
        ),
        audit=audit,
        refund_rows=rows,
        wallet_setups=WalletSetups(store.engine),
        # Its own salt: a buyer's session cookie can never pass as a staff session.
        sessions=URLSafeTimedSerializer(secret, salt="storefront.staff-session"),
        fingerprint=sign_in.fingerprint(secret) if sign_in else "",
    )
    refunds = app.extensions["admin"].refunds
    router: NotificationRouter = app.extensions["saved_wallet"].router  # registered before us
    # A REFUND IPN (section 10) settles the refund it names; a CHARGE one, refunds of it.
    for object_type in (REFUND, CHARGE):
        router.on(
            object_type,
            lambda message: refunds.settle_objects(
                [v for v in (message.object_id, message.charge_permission_id) if v]
            ),
        )


# -- signing in ----------------------------------------------------------------------------


def _signed_in() -> bool:
    token = request.cookies.get(STAFF_COOKIE)
    if not token:
        return False
    found = console()
    try:
        data = found.sessions.loads(token, max_age=int(STAFF_SESSION_LIFETIME.total_seconds()))
    except BadSignature:  # also SignatureExpired
        return False
    return isinstance(data, dict) and data.get("p") == found.fingerprint


@bp.before_request
def _gate() -> BaseResponse | None:
    if console().sign_in is None:
        abort(404)
    if request.endpoint in ("admin.login", "admin.login_post"):
        return None
    if not _signed_in():
        return redirect(url_for("admin.login"), 303)
    return None


@bp.get("/login")
def login() -> str | BaseResponse:
    if _signed_in():
        return redirect(url_for("admin.index"), 303)
    return render_template("admin/login.html", error=None)


@bp.post("/login")
def login_post() -> BaseResponse | tuple[str, int, dict[str, str]]:
    found = console()
    assert found.sign_in is not None
    result = found.sign_in.sign_in(
        request.form.get("password", ""), request.remote_addr or "unknown"
    )
    if result.kind is SignIn.LOCKED:
        message = (
            f"Too many wrong passwords. Wait {result.retry_after} seconds before trying again."
        )
        page = render_template("admin/login.html", error=message)
        return page, 429, {"Retry-After": str(result.retry_after)}
    if result.kind is SignIn.WRONG:
        return render_template("admin/login.html", error=WRONG_PASSWORD), 401, {}
    response = redirect(url_for("admin.index"), 303)
    response.set_cookie(
        STAFF_COOKIE,
        found.sessions.dumps({"p": found.fingerprint}),
        max_age=int(STAFF_SESSION_LIFETIME.total_seconds()),
        path="/admin",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


@bp.post("/logout")
def logout() -> BaseResponse:
    response = redirect(url_for("admin.login"), 303)
    response.delete_cookie(STAFF_COOKIE, path="/admin", httponly=True, samesite="Strict")
    return response


# -- orders --------------------------------------------------------------------------------


@bp.get("")
def index() -> str:
    found = console()
    raw = request.args.get("state", "")
    state = next((s for s in OrderState if s.value == raw), None)
    return render_template(
        "admin/index.html",
        orders=current_app.extensions["shop"].store.orders.recent(status=state),
        wallets=found.wallet_setups.recent(),
        states=list(OrderState),
        state=state,
        notice=_take_notice(),
        now=datetime.now(UTC),
        expired=found.charges.expired,
    )


@bp.get("/wallets")
def wallets() -> str:
    found = console()
    listed = found.wallet_setups.recent()
    return render_template(
        "admin/wallets.html",
        wallets=listed,
        chargeable=WalletState.CHARGEABLE,
        currency=CURRENCY,
        # One fresh request id per form: each rendered form charges at most once.
        request_ids={w.charge_permission_id: new_request_id() for w in listed},
        notice=_take_notice(),
    )


@bp.post("/wallets/<charge_permission_id>/charge")
def charge(charge_permission_id: str) -> BaseResponse:
    amount = parse_amount(request.form.get("amount"))
    if amount is None:
        return _to_wallets("Enter the amount to charge, e.g. 12.00.")
    result = console().merchant.charge(
        charge_permission_id, amount, request.form.get("request_id", ""), actor=ACTOR
    )
    if result.refused or result.reference is None:
        return _to_wallets(result.message)
    return _back(result.reference, result.message, error=False)


def _to_wallets(message: str) -> BaseResponse:
    session[_NOTICE] = {"text": message, "error": True}
    return redirect(url_for("admin.wallets"), 303)


@bp.get("/orders/<reference>")
def order(reference: str) -> str:
    found = console()
    store = current_app.extensions["shop"].store
    if not _REFERENCE.match(reference):
        abort(404)
    if store.orders.get(reference) is None:
        # A staff charge Amazon has not confirmed makes no order yet: ask again, then show it.
        if not found.merchant.settle(reference):
            abort(404)
        if store.orders.get(reference) is None:
            return render_template(
                "admin/charge.html",
                reference=reference,
                operations=store.ledger.for_reference(reference),
                audit=found.audit.for_order(reference),
                notice=_take_notice(),
            )
    # A refresh asks Amazon: lost answers are replayed, pending refunds and the charge read.
    found.charges.refresh(reference)
    found.refunds.refresh(reference)
    current = store.orders.get(reference)
    assert current is not None
    refunds = found.refund_rows.for_order(reference)
    return render_template(
        "admin/order.html",
        order=current,
        expired=found.charges.expired(current),
        refunds=refunds,
        pending_refunds=[r for r in refunds if r.state is RefundState.PENDING],
        operations=store.ledger.for_reference(reference),
        audit=found.audit.for_order(reference),
        notice=_take_notice(),
        request_ids={name: new_request_id() for name in ("refund", "capture", "cancel")},
        capturable=current.status is OrderState.AUTHORIZED and not found.charges.expired(current),
        cancelable=current.status in (OrderState.AUTHORIZED, OrderState.AUTHORIZATION_PENDING)
        and not found.charges.expired(current),
    )


@bp.post("/orders/<reference>/refund")
def refund(reference: str) -> BaseResponse:
    _known_order(reference)
    amount = parse_amount(request.form.get("amount"))
    if amount is None:
        return _back(reference, "Enter the amount to refund, e.g. 5.00.", error=True)
    result = console().refunds.refund(
        reference, amount, request.form.get("request_id", ""), actor=ACTOR
    )
    return _after(reference, result)


@bp.post("/orders/<reference>/capture")
def capture(reference: str) -> BaseResponse:
    _known_order(reference)
    result = console().charges.capture(reference, request.form.get("request_id", ""), actor=ACTOR)
    return _after(reference, result)


@bp.post("/orders/<reference>/cancel")
def cancel(reference: str) -> BaseResponse:
    _known_order(reference)
    result = console().charges.cancel(reference, request.form.get("request_id", ""), actor=ACTOR)
    return _after(reference, result)


def _known_order(reference: str) -> None:
    store = current_app.extensions["shop"].store
    if not _REFERENCE.match(reference) or store.orders.get(reference) is None:
        abort(404)


def _after(reference: str, result: ActionResult) -> BaseResponse:
    return _back(reference, result.message, error=result.refused)


def _back(reference: str, message: str, *, error: bool) -> BaseResponse:
    # The message rides in the signed session cookie the redirect sets (post/redirect/get).
    session[_NOTICE] = {"text": message, "error": error}
    return redirect(url_for("admin.order", reference=reference), 303)


def _take_notice() -> dict[str, object] | None:
    notice = session.pop(_NOTICE, None)
    return notice if isinstance(notice, dict) else None


# -- merchant-initiated charges on saved wallets ----------------------------------------------

_MERCHANT_PREFIX = "mit-"


def merchant_charge_reference(request_id: str) -> str:
    """The order a staff charge makes, one per request id: the saved-wallet use case charges
    one reference once, so every submit of one form lands on the same Create Charge. (A hash:
    a request id may be longer than a reference; the prefix keeps it apart from checkouts.)"""
    digest = hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:32]
    return f"{_MERCHANT_PREFIX}{digest}"


def _attempt(claim: Claim) -> int:
    tail = claim.operation_key.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _declined_words(reason: str) -> str:
    """A failed charge's recorded reason in plain words for staff."""
    if reason == Failure.CLOSED:
        return "This saved wallet is closed at Amazon and can no longer be charged."
    if reason == Failure.NON_CHARGEABLE:
        return (
            "Amazon cannot charge this wallet until the buyer updates the payment method at"
            " Amazon. Nothing was charged."
        )
    if reason == Failure.FOREIGN_WALLET:
        return "There is no such saved wallet."
    if reason == Failure.CANCELED:
        return "Amazon canceled the charge. Nothing was charged."
    if reason == Failure.REFUSED:
        return (
            "Amazon refused the charge (for example an amount over the wallet's limits)."
            " Nothing was charged."
        )
    code = DeclineCode.parse(reason)
    if code is not None:
        words = f"Amazon declined the charge ({code.value}). Nothing was charged."
        if code.buyer_must_act:
            words += " The buyer must update the payment method at Amazon first."
        return words
    return f"The charge was not made ({reason}). Nothing was charged."


class MerchantCharges:
    """Staff charges on saved wallets (`chargeInitiator: MITU`) through the buyer's use case;
    one per app, thread-safe. Exactly once per request id: its order reference is the use
    case's unit, and a request id whose charge failed is answered from that, never retried."""

    def __init__(
        self,
        charges: SavedWalletCharges,
        store: Store,
        audit: StaffAudit,
        *,
        capture_now: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self.charges = charges
        self.store = store
        self.audit = audit
        self.capture_now = capture_now
        self.clock = clock

    def charge(
        self, charge_permission_id: str, amount: Decimal, request_id: str, *, actor: str
    ) -> ActionResult:
        if not valid_request_id(request_id):
            return self._record(
                actor,
                None,
                None,
                ActionResult(
                    Outcome.REFUSED, "This form has expired. Please try again.", "bad-request-id"
                ),
            )
        reference = merchant_charge_reference(request_id)
        earlier = self._attempts(reference)
        if any(c.charge_permission_id != charge_permission_id for c in earlier):
            refused = ActionResult(
                Outcome.REFUSED,
                "This form was already used for another wallet. Please reload the page.",
                "foreign-request-id",
            )
            return self._record(actor, None, request_id, refused)
        if earlier and all(c.status == ClaimState.FAILED for c in earlier):
            # A repeat of a submit that failed: its answer again, no second try at Amazon.
            latest = max(earlier, key=_attempt)
            reason = latest.reason or "failed"
            result = ActionResult(Outcome.REFUSED, _declined_words(reason), reason, reference)
            return self._record(actor, reference, request_id, result)
        wallet = (
            self.store.wallets.get(charge_permission_id)
            if CHARGE_PERMISSION_PATTERN.match(charge_permission_id)
            else None
        )
        if wallet is None:
            refused = ActionResult(
                Outcome.REFUSED, _declined_words(Failure.FOREIGN_WALLET), "no-wallet"
            )
            return self._record(actor, None, request_id, refused)
        order = ChargeOrder(
            reference=reference,
            buyer_id=wallet.buyer_id,
            charge_permission_id=charge_permission_id,
            amount=Price.of(amount, CURRENCY),
            initiator=ChargeInitiator.MITU,
            capture_now=self.capture_now,
            source=OrderSource.MERCHANT,
            bind_pending=False,  # no cart: the reference is this staff charge's own
        )
        return self._record(actor, reference, request_id, self._result(self.charges.charge(order)))

    def settle(self, reference: str) -> bool:
        """Settle a staff charge still undecided (a refresh of its page); False: not one."""
        if not reference.startswith(_MERCHANT_PREFIX) or not self._attempts(reference):
            return False
        self.charges.settle(reference)
        return True

    def _attempts(self, reference: str) -> list[Claim]:
        return [
            claim
            for claim in self.store.ledger.for_reference(reference)
            if claim.kind == OperationKind.CREATE_CHARGE
        ]

    def _result(self, outcome: ChargeOutcome) -> ActionResult:
        reference = outcome.reference
        if outcome.kind is OutcomeKind.FAILURE:
            return ActionResult(
                Outcome.REFUSED, _declined_words(outcome.reason), outcome.reason, reference
            )
        if outcome.kind is OutcomeKind.PENDING or reference is None:
            return ActionResult(
                Outcome.UNKNOWN,
                "Amazon has not confirmed this charge yet; this page shows how it ends"
                " (reload it in a moment).",
                outcome.reason,
                reference,
            )
        order = self.store.orders.get(reference)
        if order is None:  # decided elsewhere a moment ago; the page reads it
            return ActionResult(Outcome.DONE, "The charge was made.", outcome.reason, reference)
        amount = money(order.amount, order.currency)
        if order.status is OrderState.AUTHORIZED:
            message = f"{amount} authorized on the saved wallet; capture it here when it ships."
        elif order.status is OrderState.CAPTURE_PENDING:
            message = f"{amount} charged; Amazon is still completing the capture."
        else:
            message = f"{amount} charged to the saved wallet."
        return ActionResult(Outcome.DONE, message, outcome.reason, reference)

    def _record(
        self, actor: str, reference: str | None, request_id: str | None, result: ActionResult
    ) -> ActionResult:
        outcome = result.outcome.value
        self.audit.record(
            AuditEntry(
                at=self.clock(),
                actor=actor,
                action="charge",
                order_reference=reference,
                request_id=request_id,
                outcome=f"{outcome}:{result.reason}",
            )
        )
        return result


# -- the same from a script ------------------------------------------------------------------


def _finish(result: ActionResult) -> NoReturn:
    click.echo(f"{result.outcome.value}: {result.message}")
    if result.outcome is Outcome.REFUSED:
        raise SystemExit(1)
    # Not known yet: not a refusal, but a script must not take it as done (EX_TEMPFAIL).
    raise SystemExit(75 if result.outcome is Outcome.UNKNOWN else 0)


@bp.cli.command("refund")
@click.argument("reference")
@click.argument("amount")
@click.option("--request-id", required=True, help="Your id for this refund; reuse it to retry.")
def refund_command(reference: str, amount: str, request_id: str) -> None:
    """Refund AMOUNT of order REFERENCE, once per --request-id."""
    parsed = parse_amount(amount)
    if parsed is None:
        click.echo("refused: the amount must be positive with at most two decimals, e.g. 5.00")
        raise SystemExit(1)
    _finish(console().refunds.refund(reference, parsed, request_id, actor="cli"))


@bp.cli.command("charge")
@click.argument("charge_permission_id")
@click.argument("amount")
@click.option("--request-id", required=True, help="Your id for this charge; reuse it to retry.")
def charge_command(charge_permission_id: str, amount: str, request_id: str) -> None:
    """Charge AMOUNT to the saved wallet CHARGE_PERMISSION_ID (merchant-initiated), once per
    --request-id."""
    parsed = parse_amount(amount)
    if parsed is None:
        click.echo("refused: the amount must be positive with at most two decimals, e.g. 5.00")
        raise SystemExit(1)
    result = console().merchant.charge(charge_permission_id, parsed, request_id, actor="cli")
    if result.reference is not None and not result.refused:
        result = ActionResult(
            result.outcome, f"{result.message} Order {result.reference}.", result.reason
        )
    _finish(result)
