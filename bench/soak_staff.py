"""The soak's staff: one person signed in to the merchant console refunding parts of paid
orders, sometimes submitting one form twice at once, sometimes racing two forms for an order's
remainder, while Create Refund fails at random (docs/contract.md "The merchant console")."""

from __future__ import annotations

import html
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

from bench.soak_buyers import Buyer, JourneyError, _weighted
from bench.soak_deploy import ADMIN_PASSWORD
from bench.soak_sim import charge_fault

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_REFUND_FORM = re.compile(r'<form[^>]*data-testid="refund-form".*?</form>', re.S)
_REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')
_REFUNDABLE = re.compile(r'data-testid="refundable">([0-9.]+)<')
_CHARGE = re.compile(r'data-testid="charge-id">([^<]+)<')

# How staff submit: one form once, one form twice at once (a double click: the same
# request_id), or two forms of one order (two tabs: two request_ids) racing for its remainder.
STYLES = {"once": 50, "same-form-twice": 25, "two-forms-race": 25}
FAULT_RATE = 0.3
DECLINE_RATE = 0.1  # the next refund of this charge is scripted to settle Declined


@dataclass
class StaffAction:
    """One refund attempt: which order, how it was submitted, what each submit asked for."""

    reference: str
    style: str
    scenario: str
    submits: list[tuple[str, Decimal]] = field(default_factory=list)  # request_id, amount
    error: str | None = None


@dataclass
class StaffLog:
    actions: list[StaffAction] = field(default_factory=list)
    signed_in: bool = False


def run_staff(staff: Buyer, deadline: float, log: StaffLog) -> None:
    """Sign in, then refund parts of paid orders the buyers made until the deadline."""
    try:
        sign_in(staff)
    except JourneyError as exc:
        log.actions.append(StaffAction("-", "sign-in", "none", error=str(exc)))
        return
    log.signed_in = True
    refunded: set[str] = set()
    while time.monotonic() < deadline:
        time.sleep(staff.rng.uniform(0.3, 1.5))
        paid = sorted(
            {
                j.reference
                for j in staff.recorder.journeys
                if j.reference
                and j.flow in ("one_time", "saved_wallet")
                and j.last_seen == "success"
            }
        )
        if not paid:
            continue
        # Mostly a new order, now and then one refunded before (several refunds per order).
        fresh = [r for r in paid if r not in refunded]
        reference = staff.rng.choice(fresh if fresh and staff.rng.random() < 0.7 else paid)
        refunded.add(reference)
        log.actions.append(refund_once(staff, reference))


def sign_in(staff: Buyer) -> None:
    page = staff.page("/admin/login")
    csrf = _CSRF.search(page.text)
    if page.status_code != 200 or csrf is None:
        raise JourneyError(f"GET /admin/login answered {page.status_code} without the form")
    _instance, response = staff.shop(
        "POST",
        "/admin/login",
        data={"csrf_token": html.unescape(csrf.group(1)), "password": ADMIN_PASSWORD},
    )
    if response is None or response.status_code != 303:
        status = "no response" if response is None else response.status_code
        raise JourneyError(f"POST /admin/login answered {status}")


@dataclass(frozen=True)
class _Form:
    csrf: str
    request_id: str
    refundable: Decimal
    charge_id: str | None


def _refund_form(staff: Buyer, reference: str) -> _Form | None:
    page = staff.page(f"/admin/orders/{reference}")
    if page.status_code != 200:
        raise JourneyError(f"GET /admin/orders/* answered {page.status_code}")
    form = _REFUND_FORM.search(page.text)
    refundable = _REFUNDABLE.search(page.text)
    if form is None or refundable is None:
        return None  # nothing left to refund
    csrf = _CSRF.search(form.group(0))
    request_id = _REQUEST_ID.search(form.group(0))
    if csrf is None or request_id is None:
        raise JourneyError("the refund form lacks csrf_token or request_id")
    charge = _CHARGE.search(page.text)
    return _Form(
        html.unescape(csrf.group(1)),
        html.unescape(request_id.group(1)),
        Decimal(refundable.group(1)),
        charge.group(1).strip() if charge else None,
    )


def _part(staff: Buyer, left: Decimal) -> Decimal:
    """A part of what is left (at least a cent), sometimes all of it."""
    if staff.rng.random() < 0.25:
        return left
    cents = int(left * 100)
    return Decimal(max(1, staff.rng.randint(cents // 5, max(1, cents * 3 // 5)))) / 100


def refund_once(staff: Buyer, reference: str) -> StaffAction:
    style = _weighted(staff.rng, STYLES)
    action = StaffAction(reference, style, "none")
    try:
        form = _refund_form(staff, reference)
        if form is None:
            action.scenario = "nothing-left"
            return action
        if form.charge_id and staff.rng.random() < DECLINE_RATE:
            staff.control.script_refunds(form.charge_id, "Declined")
            action.scenario = "refund-declined"
        elif staff.rng.random() < FAULT_RATE:
            fault = charge_fault(staff.rng, "CreateRefund")
            staff.control.add_fault(fault, None)
            action.scenario = f"refund-{fault.label}"
        if style == "once":
            action.submits = [(form.request_id, _part(staff, form.refundable))]
        elif style == "same-form-twice":
            submit = (form.request_id, _part(staff, form.refundable))
            action.submits = [submit, submit]
        else:
            second = _refund_form(staff, reference)
            if second is None:
                return action
            # Each tab asks for most of the remainder: both together would be too much.
            share = max(Decimal("0.01"), (form.refundable * 3 / 4).quantize(Decimal("0.01")))
            action.submits = [(form.request_id, share), (second.request_id, share)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            posts = [
                pool.submit(_post_refund, staff, reference, form.csrf, request_id, amount)
                for request_id, amount in action.submits
            ]
            for post in posts:
                post.result()
    except JourneyError as exc:
        action.error = str(exc)
    return action


def _post_refund(staff: Buyer, reference: str, csrf: str, request_id: str, amount: Decimal) -> None:
    _instance, response = staff.shop(
        "POST",
        f"/admin/orders/{reference}/refund",
        data={"csrf_token": csrf, "request_id": request_id, "amount": f"{amount:.2f}"},
    )
    if response is None:
        return  # cut off by the kill: the no-5xx check judges it
    if response.status_code != 303:
        raise JourneyError(f"POST /admin/orders/*/refund answered {response.status_code}")
