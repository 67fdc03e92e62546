"""The soak's buyers: threads, each a person with their own cookies, doing wallet setups,
one-time checkouts and saved-wallet payments through the router, refreshing and double-clicking.

Every request to the shop is recorded (`ShopRequest`: for the no-5xx check) and every page the
buyer ends up seeing after a return (`Visit`: for latency and the failure-message check).

Extension point: a flow is a function in `FLOWS` (name -> flow) plus its weight in
`flow_weights`. Staff refunds are not a buyer's flow: bench/soak_staff.py drives them.
"""

from __future__ import annotations

import html
import http.client
import ipaddress
import itertools
import json
import random
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import HTTPAdapter

from bench.soak_deploy import Instance, Router
from bench.soak_sim import FaultPlan, SimulatorControl, charge_fault, random_fault
from tests.support.buyer import HOSTED_CHOICES, page_outcome

TIMEOUT = 30.0
POLL_SECONDS = 1.0  # the pending page refreshes itself every 5 s; people press F5 sooner
MAX_POLLS = 20

_CONFIG = re.compile(
    r'<script type="application/json" id="amazon-pay-button-config">(.*?)</script>', re.S
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_PRODUCT = re.compile(r'name="product_id" value="([^"]+)"')
_SAVED_FORM = re.compile(r'<form method="post" action="/checkout/saved".*?</form>', re.S)
_REF = re.compile(r'name="ref" value="([^"]+)"')
_PERMISSION = re.compile(r'name="charge_permission_id" value="([^"]+)"')

# What the buyer picks on Amazon's hosted page, per flow, with weights.
ONE_TIME_CHOICES = {
    "success": 70,
    "pending": 10,  # card 0701: authorization pending, then Authorized
    "pending-declined": 5,  # card 4354: pending, then HardDeclined
    "Declined": 7,  # card 3434
    "BuyerCanceled": 4,  # card 3064
    "canceled": 4,  # the Cancel button
}
WALLET_CHOICES = {"success": 80, "Declined": 10, "BuyerCanceled": 5, "canceled": 5}
# What Amazon does with a saved-wallet charge, scripted per wallet (next-charges): a soft
# decline is charged once more under the next key; two soft declines or a hard one fail.
SAVED_CHOICES = {
    "success": 70,
    "soft-declined": 10,
    "soft-declined-twice": 5,
    "hard-declined": 5,
    "pending": 10,  # AuthorizationInitiated, Authorized 30 s later on the simulator clock
}
SAVED_SCRIPTS: dict[str, tuple[str, int, bool]] = {  # outcome, count, pending
    "soft-declined": ("SoftDeclined", 1, False),
    "soft-declined-twice": ("SoftDeclined", 2, False),
    "hard-declined": ("HardDeclined", 1, False),
    "pending": ("Authorized", 1, True),
}
# How the buyer comes back: once, once and then a refresh, or a double click.
RETURN_STYLES = {"once": 50, "refresh": 25, "double-click": 25}
# Card choices that are the scenario themselves; faults are injected only on the others.
CARD_SCENARIOS = {
    "pending": "pending-auth-0701",
    "pending-declined": "pending-declined-4354",
    "Declined": "declined-3434",
    "BuyerCanceled": "buyer-canceled-3064",
    "canceled": "canceled",
}
_CARDS = {"pending-declined": "4354"}


# Each person comes from an address of their own in 127.0.0.0/8 (127.1.0.1, 127.1.0.2, ...):
# the shop limits the return per client address (storefront/abuse.py), and real buyers do not
# all share one. `--one-address` puts everyone on 127.0.0.1, like people behind one NAT.
_FIRST_PERSON = ipaddress.IPv4Address("127.1.0.0")
_people = itertools.count(1)


class _FromAddress(HTTPAdapter):
    """Connects from a chosen local address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def person(one_address: bool) -> requests.Session:
    """A new person's browser: an empty cookie jar and, unless `one_address`, their own address."""
    http = requests.Session()
    if not one_address:
        http.mount("http://", _FromAddress(str(_FIRST_PERSON + next(_people))))
    return http


# How a server's close of a kept-alive connection shows up in the request sent on it.
_CLOSED_BY_SERVER = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


def _innermost(exc: BaseException) -> BaseException:
    """The innermost reason a request got no answer (e.g. ConnectionResetError)."""
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            return exc
        exc = inner


class JourneyError(RuntimeError):
    """A step before the return did not answer as a buyer needs (the message says which)."""


@dataclass(frozen=True)
class ShopRequest:
    """One HTTP request to the shop: when, where, and what came back."""

    buyer: int
    instance: str
    method: str
    path: str
    started: float  # monotonic
    latency: float
    status: int | None  # None: no HTTP response (connection refused or reset)
    error: str | None
    idle: float | None = None  # no response on a kept-alive connection: idle this long before
    resent: bool = False  # the browser resent it at once on a new connection (see `shop`)


@dataclass(frozen=True)
class Visit:
    """One visit of the return URL and the page it led to."""

    buyer: int
    flow: str
    scenario: str
    step: str  # return | refresh | double-click | poll
    checkout_session_id: str  # the order reference, for a saved-wallet payment
    instance: str
    started: float
    # Of GET /checkout/return (or POST /checkout/saved) alone, not the redirect it answers.
    latency: float
    outcome: str  # success | pending | failure | other:... | no-response


@dataclass
class Journey:
    """One buyer's way through one flow."""

    buyer: int
    flow: str
    choice: str
    scenario: str
    style: str
    checkout_session_id: str | None = None
    reference: str | None = None
    charge_permission_id: str | None = None  # the saved wallet paid with
    outcomes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def last_seen(self) -> str:
        return self.outcomes[-1] if self.outcomes else "none"


@dataclass
class Recorder:
    """What every buyer thread writes; one lock for all."""

    requests: list[ShopRequest] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    journeys: list[Journey] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, item: ShopRequest) -> None:
        with self.lock:
            self.requests.append(item)

    def visit(self, item: Visit) -> None:
        with self.lock:
            self.visits.append(item)

    def journey(self, item: Journey) -> None:
        with self.lock:
            self.journeys.append(item)


class Buyer:
    """One person: a cookie jar, a seeded random source, and the shop behind the router."""

    def __init__(
        self,
        number: int,
        *,
        router: Router,
        simulator_url: str,
        control: SimulatorControl,
        recorder: Recorder,
        rng: random.Random,
        fault_rate: float,
        stop_polling_at: float,
        one_address: bool = False,
    ) -> None:
        self.number = number
        self.router = router
        self.simulator_url = simulator_url.rstrip("/")
        self.control = control
        self.recorder = recorder
        self.rng = rng
        self.fault_rate = fault_rate
        self.stop_polling_at = stop_polling_at
        self.one_address = one_address
        self.http = person(one_address)
        self.has_wallet = False  # this person saved a wallet (the saved-wallet flow needs one)
        # When this person's last answer from each instance ended: a lost response names how
        # long its kept-alive connection had been idle (the server may close an idle one).
        self.last_answer: dict[str, float] = {}

    # -- the shop, through the router ------------------------------------------------------

    def shop(
        self, method: str, path: str, *, instance: Instance | None = None, **kwargs: Any
    ) -> tuple[Instance, requests.Response | None]:
        """One request to one instance, as a browser and a person send it.

        A browser resends a request, once and unseen, when the server closed the kept-alive
        connection it went out on before any byte of an answer: servers close idle
        connections (gunicorn after `keepalive` seconds) and may do so just as a request is
        sent. A request cut off otherwise (the kill) is tried once more on another instance,
        as a person reloads an error page."""
        target = instance or self.router.pick(self.rng)
        resent = moved = False
        while True:
            started = time.monotonic()
            try:
                response = self.http.request(
                    method,
                    target.url + path,
                    allow_redirects=False,
                    timeout=TIMEOUT,
                    **kwargs,
                )
            except requests.ConnectionError as exc:
                cause = _innermost(exc)
                kept_alive = target.name in self.last_answer
                idle = started - self.last_answer.get(target.name, started)
                resend = not resent and kept_alive and isinstance(cause, _CLOSED_BY_SERVER)
                self.recorder.request(
                    ShopRequest(
                        self.number,
                        target.name,
                        method,
                        _route(path),
                        started,
                        time.monotonic() - started,
                        None,
                        f"{type(exc).__name__}: {type(cause).__name__}({str(cause)[:60]});"
                        f" connection idle {idle:.2f} s",
                        idle=idle if kept_alive else None,
                        resent=resend,
                    )
                )
                # The next request opens a new connection (urllib3 drops the broken one).
                self.last_answer.pop(target.name, None)
                if resend:
                    resent = True
                    continue
                if not moved:
                    moved = True
                    target = self.router.pick(self.rng, avoid=target.name)
                    continue
                return target, None
            self.last_answer[target.name] = time.monotonic()
            self.recorder.request(
                ShopRequest(
                    self.number,
                    target.name,
                    method,
                    _route(path),
                    started,
                    self.last_answer[target.name] - started,
                    response.status_code,
                    None,
                )
            )
            return target, response

    def page(self, path: str) -> requests.Response:
        """GET a page and follow its redirects (each hop through the router)."""
        for _hop in range(5):
            _instance, response = self.shop("GET", path)
            if response is None:
                raise JourneyError(f"GET {_route(path)}: no response from either instance")
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            path = _local(response.headers["Location"])
        raise JourneyError(f"GET {_route(path)}: too many redirects")

    # -- steps -----------------------------------------------------------------------------

    def add_to_cart(self) -> None:
        index = self.page("/")
        csrf = _CSRF.search(index.text)
        products = _PRODUCT.findall(index.text)
        if index.status_code != 200 or csrf is None or not products:
            raise JourneyError(f"storefront answered {index.status_code} without the cart form")
        _instance, response = self.shop(
            "POST",
            "/cart/add",
            data={
                "csrf_token": html.unescape(csrf.group(1)),
                "product_id": self.rng.choice(products),
            },
        )
        if response is None or response.status_code not in (200, 302, 303):
            raise JourneyError(f"add to cart answered {_status(response)}")

    def button_config(self, path: str) -> dict[str, Any]:
        response = self.page(path)
        found = _CONFIG.search(response.text)
        if response.status_code != 200 or found is None:
            raise JourneyError(f"GET {path} answered {response.status_code} without a button")
        config: dict[str, Any] = json.loads(found.group(1))
        return config

    def at_amazon(self, config: dict[str, Any], choice: str) -> tuple[str, str]:
        """Press the button (checkout.js's form POST) and choose; returns session id and the
        return URL's path and query."""
        session_config = config["createCheckoutSessionConfig"]
        form = {
            "payloadJSON": session_config["payloadJSON"],
            "signature": session_config["signature"],
            "publicKeyId": session_config.get("publicKeyId") or config["publicKeyId"],
            "algorithm": session_config.get("algorithm") or "AMZN-PAY-RSASSA-PSS",
            "merchantId": config["merchantId"],
            "sandbox": "false" if config.get("sandbox") is False else "true",
            "productType": config.get("productType", ""),
            "checkoutLanguage": config.get("checkoutLanguage", ""),
        }
        started = requests.post(
            self.simulator_url + "/checkout/start",
            data=form,
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        if started.status_code != 303:
            raise JourneyError(f"the button form at the simulator answered {started.status_code}")
        session_id = started.headers["Location"].rstrip("/").rsplit("/", 1)[1]
        method = _CARDS.get(choice) or HOSTED_CHOICES[choice]
        chosen = requests.post(
            f"{self.simulator_url}/hosted/{session_id}/choose",
            data={"method": method},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        if chosen.status_code != 303:
            raise JourneyError(f"the hosted page answered {chosen.status_code}")
        location = chosen.headers["Location"]
        if parse_qs(urlsplit(location).query).get("amazonCheckoutSessionId") != [session_id]:
            raise JourneyError("the return URL does not carry its session id")
        return session_id, _local(location)

    def visit_return(self, journey: Journey, return_path: str, step: str) -> str:
        """GET the return URL, then the page it redirects to; records and returns the outcome."""
        assert journey.checkout_session_id is not None
        started = time.monotonic()
        target = self.router.pick(self.rng)
        self.router.returning(target, +1)
        try:
            instance, response = self.shop("GET", return_path, instance=target)
        finally:
            self.router.returning(target, -1)
        latency = time.monotonic() - started
        if response is None:
            outcome = "no-response"
        else:
            latency = response.elapsed.total_seconds()
            if response.status_code in (302, 303):
                back_to = _local(response.headers["Location"])
                outcome = page_outcome(self.page(back_to))
                if outcome.startswith("other:") and back_to in ("/checkout", "/wallet"):
                    # Sent back to the start of checkout: the contract's failure. The notice
                    # is shown once per cookie, so the second click of a double click (same
                    # cookie, same moment) may find it taken by the first.
                    outcome = "failure"
            else:
                outcome = page_outcome(response)
        self.recorder.visit(
            Visit(
                self.number,
                journey.flow,
                journey.scenario,
                step,
                journey.checkout_session_id,
                instance.name,
                started,
                latency,
                outcome,
            )
        )
        journey.outcomes.append(outcome)
        return outcome

    def come_back(self, journey: Journey, return_path: str) -> None:
        """The return as people do it: once, once and a refresh, or a double click; then the
        pending page's refreshes until the outcome is known (bounded)."""
        if journey.style == "double-click":
            with ThreadPoolExecutor(max_workers=2) as pool:
                clicks = [
                    pool.submit(self.visit_return, journey, return_path, "double-click")
                    for _ in range(2)
                ]
                outcomes = [click.result() for click in clicks]
            outcome = "pending" if "pending" in outcomes else outcomes[-1]
        else:
            outcome = self.visit_return(journey, return_path, "return")
            if journey.style == "refresh":
                outcome = self.visit_return(journey, return_path, "refresh")
        polls = 0
        while outcome in ("pending", "no-response") and polls < MAX_POLLS:
            if time.monotonic() > self.stop_polling_at:
                break
            time.sleep(POLL_SECONDS)
            outcome = self.visit_return(journey, return_path, "poll")
            polls += 1

    # -- flows -----------------------------------------------------------------------------

    def pay_saved(self) -> Journey | None:
        """Pay a cart with a saved wallet (the "Pay with" form on /checkout): once, once and a
        reload of the page it led to, or a double click; None when /checkout offers no form."""
        choice = _weighted(self.rng, SAVED_CHOICES)
        style = _weighted(self.rng, RETURN_STYLES)
        fault: FaultPlan | None = None
        if choice in SAVED_SCRIPTS:
            scenario = f"saved-{choice}"
        elif self.rng.random() < self.fault_rate:
            fault = charge_fault(self.rng, "CreateCharge")
            scenario = f"charge-{fault.label}"
        else:
            scenario = "none"
        journey = Journey(self.number, "saved_wallet", choice, scenario, style)
        try:
            self.add_to_cart()
            page = self.page("/checkout")
            form = _SAVED_FORM.search(page.text)
            if form is None:
                return None
            csrf, ref, permission = (
                _CSRF.search(form.group(0)),
                _REF.search(form.group(0)),
                _PERMISSION.search(form.group(0)),
            )
            if csrf is None or ref is None or permission is None:
                raise JourneyError("the Pay with form lacks csrf_token, ref or charge permission")
            journey.reference = html.unescape(ref.group(1))
            journey.charge_permission_id = html.unescape(permission.group(1))
            if choice in SAVED_SCRIPTS:
                outcome, count, pending = SAVED_SCRIPTS[choice]
                self.control.script_charges(
                    journey.charge_permission_id, outcome, count=count, pending=pending
                )
            if fault is not None:
                # Create Charge has no session in its path: this fault hits the next Create
                # Charge of anyone; the table counts faults by whose call they hit.
                self.control.add_fault(fault, None)
            form_data = {
                "csrf_token": html.unescape(csrf.group(1)),
                "ref": journey.reference,
                "charge_permission_id": journey.charge_permission_id,
            }
            if style == "double-click":
                with ThreadPoolExecutor(max_workers=2) as pool:
                    clicks = [
                        pool.submit(self.submit_saved, journey, form_data, "double-click")
                        for _ in range(2)
                    ]
                    outcomes = [click.result() for click in clicks]
                outcome_seen = "pending" if "pending" in outcomes else outcomes[-1]
            else:
                outcome_seen = self.submit_saved(journey, form_data, "pay")
                if style == "refresh" and outcome_seen == "success":
                    outcome_seen = self.visit_result(journey, "refresh")
            polls = 0
            while outcome_seen in ("pending", "no-response") and polls < MAX_POLLS:
                if time.monotonic() > self.stop_polling_at:
                    break
                time.sleep(POLL_SECONDS)
                outcome_seen = self.visit_result(journey, "poll")
                polls += 1
        except (JourneyError, requests.RequestException) as exc:
            journey.error = f"{type(exc).__name__}: {exc}"
        return journey

    def submit_saved(self, journey: Journey, form: dict[str, str], step: str) -> str:
        """POST /checkout/saved and what the buyer sees after it."""
        started = time.monotonic()
        instance, response = self.shop("POST", "/checkout/saved", data=form)
        latency = time.monotonic() - started
        if response is None:
            outcome = "no-response"
        else:
            latency = response.elapsed.total_seconds()
            outcome = self._landing(response)
        self._saw(
            journey, step=step, instance=instance, started=started, latency=latency, outcome=outcome
        )
        return outcome

    def visit_result(self, journey: Journey, step: str) -> str:
        """Reload the result page (a pending one settles there)."""
        started = time.monotonic()
        instance, response = self.shop("GET", f"/checkout/result/{journey.reference}")
        latency = time.monotonic() - started
        outcome = "no-response" if response is None else self._landing(response)
        self._saw(
            journey, step=step, instance=instance, started=started, latency=latency, outcome=outcome
        )
        return outcome

    def _landing(self, response: requests.Response) -> str:
        if response.status_code in (302, 303):
            back_to = _local(response.headers["Location"])
            outcome = page_outcome(self.page(back_to))
            if outcome.startswith("other:") and back_to == "/checkout":
                outcome = "failure"  # the notice may have gone to the other click
            return outcome
        return page_outcome(response)

    def _saw(
        self,
        journey: Journey,
        *,
        step: str,
        instance: Instance,
        started: float,
        latency: float,
        outcome: str,
    ) -> None:
        self.recorder.visit(
            Visit(
                self.number,
                journey.flow,
                journey.scenario,
                step,
                journey.reference or "",
                instance.name,
                started,
                latency,
                outcome,
            )
        )
        journey.outcomes.append(outcome)

    def journey(self, flow: str, weights: dict[str, int]) -> Journey:
        choice = _weighted(self.rng, weights)
        style = _weighted(self.rng, RETURN_STYLES)
        fault: FaultPlan | None = None
        if choice in CARD_SCENARIOS:
            scenario = CARD_SCENARIOS[choice]
        elif self.rng.random() < self.fault_rate:
            fault = random_fault(self.rng, one_time=flow == "one_time")
            scenario = fault.label
        else:
            scenario = "none"
        journey = Journey(self.number, flow, choice, scenario, style)
        try:
            if flow == "one_time":
                self.add_to_cart()
                config = self.button_config("/checkout")
            else:
                config = self.button_config("/wallet")
            payload = json.loads(config["createCheckoutSessionConfig"]["payloadJSON"])
            journey.reference = payload["merchantMetadata"]["merchantReferenceId"]
            session_id, return_path = self.at_amazon(config, choice)
            journey.checkout_session_id = session_id
            if fault is not None:
                self.control.add_fault(fault, session_id)
            self.come_back(journey, return_path)
        except (JourneyError, requests.RequestException) as exc:
            journey.error = f"{type(exc).__name__}: {exc}"
        return journey


def one_time(buyer: Buyer) -> Journey:
    return buyer.journey("one_time", ONE_TIME_CHOICES)


def wallet_setup(buyer: Buyer) -> Journey:
    journey = buyer.journey("wallet_setup", WALLET_CHOICES)
    if journey.last_seen == "success":
        buyer.has_wallet = True
    return journey


def saved_wallet(buyer: Buyer) -> Journey:
    """Pay with the saved wallet; a person without one (or whose wallet /checkout no longer
    offers, after a hard decline) saves one first."""
    if buyer.has_wallet:
        journey = buyer.pay_saved()
        if journey is not None:
            return journey
        buyer.has_wallet = False
    return wallet_setup(buyer)


FLOWS: dict[str, Callable[[Buyer], Journey]] = {
    "one_time": one_time,
    "wallet_setup": wallet_setup,
    "saved_wallet": saved_wallet,
}


def flow_weights() -> dict[str, int]:
    return {"one_time": 45, "wallet_setup": 15, "saved_wallet": 40}


def run_buyer(buyer: Buyer, deadline: float) -> None:
    """Journeys until the deadline; a journey under way is finished, never cut off."""
    weights = flow_weights()
    while time.monotonic() < deadline:
        flow = _weighted(buyer.rng, weights)
        buyer.recorder.journey(FLOWS[flow](buyer))
        if buyer.rng.random() < 0.2:
            buyer.http.close()
            buyer.http = person(buyer.one_address)  # a new person arrives on this thread
            buyer.has_wallet = False


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


def _local(url: str) -> str:
    """An absolute shop URL as path and query, to send through the router."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _route(path: str) -> str:
    """The path without ids, for tables: /checkout/result/<ref> -> /checkout/result/*."""
    bare = path.split("?", 1)[0]
    if bare.startswith("/checkout/result/"):
        return "/checkout/result/*"
    if bare.startswith("/admin/orders/"):
        return "/admin/orders/*" + ("/refund" if bare.endswith("/refund") else "")
    return bare


def _status(response: requests.Response | None) -> str:
    return "no response" if response is None else str(response.status_code)
