"""The merchant console under /admin, and the same staff actions as `flask` commands.

Thin views (docs/contract.md "The merchant console"): sign-in with one password, a signed and
expiring staff cookie of its own (path /admin, HttpOnly, SameSite=Strict), every form with the
app-wide CSRF token and, where money moves, a `request_id` made when the page was rendered.
Without ADMIN_PASSWORD every /admin route answers 404; the CLI commands work regardless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

from storefront.captures import ChargeDesk
from storefront.db.audit import StaffAudit
from storefront.db.orders import WalletSetups
from storefront.db.refunds import RefundRows
from storefront.db.throttles import Throttles
from storefront.notifications import CHARGE, REFUND, NotificationRouter
from storefront.refunds import RefundDesk
from storefront.staff import (
    ACTOR,
    ActionResult,
    Outcome,
    SignIn,
    StaffSignIn,
    new_request_id,
    parse_amount,
)
from storefront.states import OrderState, RefundState
from storefront.web import Shop

__all__ = ["Console", "bp", "console", "reconcile_console"]

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
    audit: StaffAudit
    refund_rows: RefundRows
    wallet_setups: WalletSetups
    sessions: URLSafeTimedSerializer
    fingerprint: str

    def reconcile(self, *, limit: int) -> str:
        """One line for `flask reconcile`: lost answers replayed, refunds settled."""
        charges = self.charges.reconcile(limit=limit)
        refunds = self.refunds.reconcile(limit=limit)
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


@bp.get("/orders/<reference>")
def order(reference: str) -> str:
    found = console()
    store = current_app.extensions["shop"].store
    if not _REFERENCE.match(reference) or store.orders.get(reference) is None:
        abort(404)
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
