"""The signed API as Amazon answers it (docs/amazon-pay-api.md sections 1, 5, 7 and 9): route,
authenticate, throttle, apply a scripted fault, replay an idempotent answer, then execute."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from amazonpay.simulator.auth import IDEMPOTENCY_HEADER, authenticate
from amazonpay.simulator.faults import Fault
from amazonpay.simulator.idempotency import Stored, fingerprint
from amazonpay.simulator.routes import KEY_REQUIRED, execute, route
from amazonpay.simulator.state import (
    LIVE,
    SANDBOX,
    SIMULATION_CODES,
    JSONObject,
    SimulatorError,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from amazonpay.simulator.app import Simulator

log = logging.getLogger(__name__)

INTERNAL_ERROR: JSONObject = {
    "reasonCode": "InternalServerError",
    "message": "Internal simulator error",
}


@dataclass
class Answer:
    status: int
    body: JSONObject
    headers: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None


def json_response(
    status: int, body: JSONObject, headers: Mapping[str, str] | None = None
) -> WerkzeugResponse:
    """An API answer: JSON, with the `x-amz-pay-request-id` every Amazon response has."""
    response = WerkzeugResponse(
        json.dumps(body), status=status, content_type="application/json;charset=UTF-8"
    )
    response.headers["x-amz-pay-request-id"] = str(uuid.uuid4())
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def environ_raw_path(environ: Mapping[str, Any]) -> str:
    """The path exactly as the client sent it (section 1.3), before any percent-decoding."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw:
        if "://" in raw:  # absolute-form request target
            raw = urlsplit(raw).path or "/"
        return raw.split("?", 1)[0]
    path = environ.get("PATH_INFO", "/")
    # WSGI gives PATH_INFO as latin-1-decoded bytes; re-quote it to get the wire form back.
    return quote(str(path).encode("latin-1").decode("utf-8", "replace"), safe="/-_.~!$&'()*+,;=:@%")


def serve_api(
    sim: Simulator,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    match: re.Match[str],
) -> Iterable[bytes]:
    """Answer one API request, log it, and play a `delay` or `drop` fault on the wire."""
    req = WerkzeugRequest(environ)
    entry: JSONObject = {
        "operation": None,
        "method": req.method,
        "path": req.path,
        "checkout_session_id": None,
        "idempotency_key": req.headers.get(IDEMPOTENCY_HEADER),
        "status": None,
        "fault": None,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    try:
        answer = _answer(sim, req, match, entry)
    except SimulatorError as error:
        answer = Answer(error.status, error.body())
    except Exception:  # the never-a-stack-trace rule: a simulator bug is a JSON 500
        log.exception("simulator bug in %s %s", req.method, req.path)
        answer = Answer(500, dict(INTERNAL_ERROR))
    entry["status"] = answer.status
    if answer.fault is not None:
        entry["fault"] = answer.fault.kind
    sim.record(entry)
    fault = answer.fault
    if fault is not None and fault.kind == "delay":
        time.sleep(fault.delay_ms / 1000)
    if fault is not None and fault.kind == "drop":
        # Applied, but no HTTP response at all: close the connection under the client.
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:  # pragma: no cover - other servers: the best we can do is an abort
            raise ConnectionAbortedError("simulated connection drop")
    return json_response(answer.status, answer.body, answer.headers)(environ, start_response)


def _received_headers(req: WerkzeugRequest) -> dict[str, str]:
    """Lower-case names to values, repeated headers joined with `,` (section 1.5)."""
    headers: dict[str, str] = {}
    for name, value in req.headers.items():
        lower = name.lower()
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    return headers


def _payload(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SimulatorError(
            400, "InvalidRequestFormat", "The request body is not valid JSON"
        ) from None


def _answer(
    sim: Simulator, req: WerkzeugRequest, match: re.Match[str], entry: JSONObject
) -> Answer:
    operation, object_id = route(req.method, match["resource"], req.path)
    entry["operation"] = operation
    if "CheckoutSession" in operation and operation != "CreateCheckoutSession":
        entry["checkout_session_id"] = object_id

    raw_uri = environ_raw_path(req.environ)
    headers = _received_headers(req)
    body = req.get_data(cache=True)
    caller = authenticate(
        method=req.method,
        raw_path=raw_uri,
        raw_query=req.environ.get("QUERY_STRING", ""),
        headers=headers,
        body=body,
        path_environment={"sandbox": SANDBOX, "live": LIVE}.get(match["env"] or ""),
        public_keys=sim.public_keys,
        now=sim.reference_times(),
        max_future=sim.max_date_skew_future,
        max_age=sim.max_date_age,
    )
    if operation in KEY_REQUIRED and caller.idempotency_key is None:
        raise SimulatorError(400, "MissingHeader", f"The {IDEMPOTENCY_HEADER} header is required")
    payload = _payload(body)

    simulation = headers.get("x-amz-pay-simulation-code")
    if simulation is not None and (
        caller.environment != SANDBOX or simulation not in SIMULATION_CODES.get(operation, ())
    ):
        raise SimulatorError(
            400,
            "InvalidSandboxSimulationSpecified",
            f"{simulation!r} is not a sandbox simulation for {operation} here",
        )

    base_url = req.host_url.rstrip("/")
    with sim.lock:
        sim.store.tick()
        if sim.throttling:
            wait = sim.throttle.retry_after(caller.public_key_id, operation)
            if wait is not None:
                return Answer(
                    429,
                    {"reasonCode": "TooManyRequests", "message": "The request was throttled"},
                    {"Retry-After": str(wait)},
                )
        fault = sim.faults.take(operation, object_id)
        if fault is not None and fault.kind == "status":
            headers_out = {}
            if fault.retry_after is not None:
                headers_out["Retry-After"] = str(fault.retry_after)
            body_out = {"reasonCode": fault.reason_code, "message": "Simulated fault"}
            return Answer(fault.status, body_out, headers_out, fault)

        scope: tuple[str, str] | None = None
        request_fingerprint = ""
        if caller.idempotency_key is not None:
            # Section 7: same key + same request replays; any difference is an error.
            scope = (caller.public_key_id, caller.idempotency_key)
            request_fingerprint = fingerprint(req.method, raw_uri, body)
            previous = sim.idempotency.replay(scope, request_fingerprint)
            if previous is not None:
                entry["fault"] = "replay"
                if operation == "CreateCheckoutSession":
                    entry["checkout_session_id"] = previous.body.get("checkoutSessionId")
                return Answer(previous.status, previous.body, {}, fault)
        try:
            status, result = execute(
                sim.store,
                operation,
                caller.environment,
                object_id,
                payload,
                base_url=sim.public_url or base_url,
                force_pending=fault is not None and fault.kind == "pending",
                simulation=simulation,
            )
            answer = Answer(status, result, {}, fault)
        except SimulatorError as error:
            answer = Answer(error.status, error.body(), {}, fault)
        if operation == "CreateCheckoutSession":
            entry["checkout_session_id"] = answer.body.get("checkoutSessionId")
        if scope is not None:
            sim.idempotency.remember(scope, Stored(request_fingerprint, answer.status, answer.body))
        sim.flush_events(base_url)
        return answer
