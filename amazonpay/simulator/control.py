"""The unauthenticated control API under `/_simulator/` for tests and development: faults, the
request log, the clock, throttling, and playing the buyer or Amazon (README.md in this package)."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from amazonpay.simulator.faults import parse_fault
from amazonpay.simulator.routes import OPERATIONS
from amazonpay.simulator.state import OUTCOMES, JSONObject, SimulatorError, parse_price
from amazonpay.simulator.state.authorization import scripted_charges
from amazonpay.simulator.state.refunds import refund_outcome

if TYPE_CHECKING:
    from amazonpay.simulator.app import Simulator

log = logging.getLogger(__name__)


def not_found(path: str) -> JSONObject:
    return {"reasonCode": "ResourceNotFound", "message": f"No resource at {path}"}


def _bad(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify({"reasonCode": "InvalidParameterValue", "message": message}), status


def _body() -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    return data if isinstance(data, dict) else {}


def register_control(app: Flask, sim: Simulator) -> None:
    """The `/_simulator/` endpoints and the JSON error handlers of the Flask side."""

    @app.errorhandler(SimulatorError)
    def _simulator_error(error: SimulatorError) -> tuple[Response, int]:
        return jsonify(error.body()), error.status

    @app.errorhandler(404)
    def _missing(_error: Exception) -> tuple[Response, int]:
        return jsonify(not_found(request.path)), 404

    @app.errorhandler(405)
    def _method(_error: Exception) -> tuple[Response, int]:
        message = f"{request.method} is not supported on {request.path}"
        return jsonify({"reasonCode": "UnsupportedOperation", "message": message}), 405

    @app.errorhandler(Exception)
    def _bug(error: Exception) -> Any:
        if isinstance(error, HTTPException):
            return error
        log.exception("simulator bug", exc_info=error)
        body = {"reasonCode": "InternalServerError", "message": "Internal simulator error"}
        return jsonify(body), 500

    @app.get("/_simulator/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/_simulator/sns-cert.pem")
    def sns_cert() -> Response:
        return Response(sim.certificate.pem, mimetype="application/x-pem-file")

    @app.post("/_simulator/faults")
    def add_fault() -> Any:
        try:
            fault = parse_fault(_body(), OPERATIONS)
        except ValueError as error:
            return _bad(str(error))
        sim.add_fault(fault)
        return jsonify(fault.to_json()), 201

    @app.get("/_simulator/faults")
    def list_faults() -> Response:
        with sim.lock:
            return jsonify(sim.faults.to_json())

    @app.get("/_simulator/requests")
    def requests_log() -> Response:
        return jsonify(sim.request_log())

    @app.post("/_simulator/reset")
    def reset() -> Response:
        sim.reset(data=bool(_body().get("data", False)))
        return jsonify({"status": "reset"})

    @app.post("/_simulator/clock")
    def clock() -> Any:
        try:
            seconds = float(_body().get("advance_seconds", 0))
        except (TypeError, ValueError):
            return _bad("advance_seconds must be a number")
        if seconds < 0:
            return _bad("the clock only moves forward")
        now = sim.advance_clock(seconds)
        return jsonify({"now": now.strftime("%Y%m%dT%H%M%SZ")})

    @app.post("/_simulator/throttling")
    def throttling() -> Response:
        sim.throttling = bool(_body().get("enabled", True))
        return jsonify({"throttling": sim.throttling})

    @app.post("/_simulator/sessions/<session_id>/outcome")
    def session_outcome(session_id: str) -> Any:
        outcome = _body().get("outcome")
        if outcome not in OUTCOMES:
            return _bad(f"outcome must be one of {', '.join(OUTCOMES)}")
        return jsonify(sim.set_buyer_outcome(session_id, outcome))

    @app.post("/_simulator/charges/<charge_id>/outcome")
    def charge_outcome(charge_id: str) -> Any:
        outcome = str(_body().get("outcome", ""))
        return jsonify(sim.transact(lambda store: store.charges.set_outcome(charge_id, outcome)))

    @app.post("/_simulator/charge-permissions/<permission_id>/state")
    def permission_state(permission_id: str) -> Any:
        data = _body()
        state = str(data.get("state", ""))
        codes = data.get("reason_codes")
        if codes is None:
            codes = [data["reason_code"]] if data.get("reason_code") else []
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            return _bad("reason_codes must be a list of reason codes")
        return jsonify(
            sim.transact(lambda store: store.permissions.set_state(permission_id, state, codes))
        )

    @app.post("/_simulator/charge-permissions/<permission_id>/buyer")
    def buyer_action(permission_id: str) -> Any:
        data = _body()
        action = str(data.get("action", ""))
        card = data.get("card")
        if card is not None and not isinstance(card, str):
            return _bad("card must be a string of 4 digits")
        return jsonify(
            sim.transact(lambda store: store.permissions.buyer_action(permission_id, action, card))
        )

    @app.post("/_simulator/charge-permissions/<permission_id>/next-charges")
    def script_charges(permission_id: str) -> Any:
        data = _body()
        try:
            count = int(data.get("count", 1))
        except (TypeError, ValueError):
            return _bad("count must be an integer")
        outcome, pending = str(data.get("outcome", "")), data.get("pending", False) is True
        try:
            scripted = scripted_charges(outcome, count, pending)
        except ValueError as error:
            return _bad(str(error))
        return jsonify(
            sim.transact(lambda store: store.permissions.script_charges(permission_id, scripted))
        )

    @app.get("/_simulator/charge-permissions/<permission_id>/next-charges")
    def scripted_list(permission_id: str) -> Any:
        return jsonify(sim.transact(lambda store: store.permissions.script_of(permission_id)))

    @app.post("/_simulator/charge-permissions/<permission_id>/monthly-limit")
    def monthly_limit(permission_id: str) -> Any:
        data = _body()
        limit: tuple[Decimal, str] | None = None
        if data.get("amount") is not None:
            try:
                limit = parse_price(data, "monthly limit")
            except SimulatorError as error:
                return _bad(error.message)
        return jsonify(
            sim.transact(lambda store: store.permissions.set_monthly_limit(permission_id, limit))
        )

    @app.post("/_simulator/refunds/<refund_id>/outcome")
    def refund_outcome_now(refund_id: str) -> Any:
        data = _body()
        try:
            outcome = refund_outcome(str(data.get("outcome", "")), data.get("reason_code"))
        except ValueError as error:
            return _bad(str(error))
        return jsonify(sim.transact(lambda store: store.refunds.set_outcome(refund_id, outcome)))

    @app.post("/_simulator/charges/<charge_id>/next-refunds")
    def script_refunds(charge_id: str) -> Any:
        data = _body()
        try:
            count = int(data.get("count", 1))
        except (TypeError, ValueError):
            return _bad("count must be an integer")
        try:
            outcome = refund_outcome(str(data.get("outcome", "")), data.get("reason_code"))
        except ValueError as error:
            return _bad(str(error))
        queued = sim.transact(lambda store: store.refunds.script(charge_id, outcome, count))
        return jsonify({"chargeId": charge_id, "next_refunds": queued})
