"""The error tree: which class each status and reasonCode becomes, and what a decline tells us."""

from __future__ import annotations

import pytest

from amazonpay import errors
from amazonpay.errors import DeclineCode, DeclinedError, error_class

# (status, reasonCode, class, the broader class an older `except` still catches it with)
MAPPING: list[tuple[int, str | None, type[errors.APIError], type[errors.APIError]]] = [
    (400, "InvalidParameterValue", errors.InvalidRequestError, errors.InvalidRequestError),
    (400, "MissingParameterValue", errors.InvalidRequestError, errors.InvalidRequestError),
    (400, "DuplicateIdempotencyKey", errors.DuplicateIdempotencyKey, errors.InvalidRequestError),
    (
        400,
        "TransactionAmountExceeded",
        errors.TransactionAmountExceeded,
        errors.InvalidRequestError,
    ),
    (400, "CurrencyMismatch", errors.InvalidRequestError, errors.InvalidRequestError),
    (400, "CheckoutSessionCanceled", errors.CheckoutSessionCanceled, errors.ConflictError),
    (422, "CheckoutSessionCanceled", errors.CheckoutSessionCanceled, errors.ConflictError),
    (
        422,
        "InvalidCheckoutSessionStatus",
        errors.InvalidCheckoutSessionStatus,
        errors.ConflictError,
    ),
    (409, "AmountMismatch", errors.AmountMismatch, errors.ConflictError),
    (
        422,
        "InvalidChargePermissionStatus",
        errors.InvalidChargePermissionStatus,
        errors.ConflictError,
    ),
    (422, "InvalidChargeStatus", errors.InvalidChargeStatus, errors.ConflictError),
    (400, "HardDeclined", DeclinedError, errors.APIError),
    (400, "SoftDeclined", DeclinedError, errors.APIError),
    (400, "ProcessingFailure", DeclinedError, errors.APIError),
    (500, "ProcessingFailure", DeclinedError, errors.APIError),
    (400, "TransactionCountExceeded", DeclinedError, errors.APIError),
    (400, "PeriodicAmountExceeded", DeclinedError, errors.APIError),
    (400, "MFANotCompleted", DeclinedError, errors.APIError),
    (400, "PaymentMethodNotAllowed", DeclinedError, errors.APIError),
    (400, "TransactionTimedOut", DeclinedError, errors.APIError),
    (400, "AmazonRejected", DeclinedError, errors.APIError),
    (401, "UnauthorizedAccess", errors.AuthenticationError, errors.AuthenticationError),
    (403, "InvalidRequestSignature", errors.AuthenticationError, errors.AuthenticationError),
    (403, "InvalidAccountStatus", errors.AuthenticationError, errors.AuthenticationError),
    (404, "ResourceNotFound", errors.NotFoundError, errors.NotFoundError),
    (405, "UnsupportedOperation", errors.InvalidRequestError, errors.InvalidRequestError),
    (429, "TooManyRequests", errors.RateLimitError, errors.RateLimitError),
    (500, "InternalServerError", errors.ServiceError, errors.ServiceError),
    (503, "ServiceUnavailable", errors.ServiceError, errors.ServiceError),
    # An unknown or missing reasonCode falls back on the status.
    (400, "SomethingNew", errors.InvalidRequestError, errors.InvalidRequestError),
    (403, None, errors.AuthenticationError, errors.AuthenticationError),
    (404, None, errors.NotFoundError, errors.NotFoundError),
    (409, "SomethingNew", errors.ConflictError, errors.ConflictError),
    (422, None, errors.ConflictError, errors.ConflictError),
    (429, None, errors.RateLimitError, errors.RateLimitError),
    (502, None, errors.ServiceError, errors.ServiceError),
    (418, None, errors.InvalidRequestError, errors.InvalidRequestError),
]


@pytest.mark.parametrize(
    ("status", "reason", "expected", "broader"),
    MAPPING,
    ids=[f"{m[0]}-{m[1]}" for m in MAPPING],
)
def test_error_class_maps_status_and_reason(
    status: int,
    reason: str | None,
    expected: type[errors.APIError],
    broader: type[errors.APIError],
) -> None:
    cls = error_class(status, reason)
    assert cls is expected
    assert issubclass(cls, broader)
    assert issubclass(cls, errors.APIError)
    assert issubclass(cls, errors.AmazonPayError)


def test_every_decline_code_is_a_declined_error() -> None:
    assert {code for code in DeclineCode if error_class(400, code) is DeclinedError} == set(
        DeclineCode
    )


# (decline code, a retry with a new key may help, the buyer must act at Amazon)
DECLINES: list[tuple[str, bool, bool]] = [
    ("HardDeclined", False, True),
    ("SoftDeclined", True, False),
    ("ProcessingFailure", True, False),
    ("TransactionCountExceeded", False, False),
    ("PeriodicAmountExceeded", False, False),
    ("MFANotCompleted", False, True),
    ("PaymentMethodNotAllowed", False, True),
    ("TransactionTimedOut", False, False),
    ("AmazonRejected", False, False),
]


@pytest.mark.parametrize(("reason", "retry", "buyer"), DECLINES, ids=[d[0] for d in DECLINES])
def test_declined_error_carries_its_code_and_what_to_do(
    reason: str, retry: bool, buyer: bool
) -> None:
    error = error_class(400, reason)(400, reason, "declined", "rid-1")
    assert isinstance(error, DeclinedError)
    assert error.decline_code is DeclineCode(reason)
    assert error.decline_code == reason
    assert error.reason_code == reason
    assert error.retry_may_help is retry
    assert error.buyer_must_act is buyer
    assert DeclineCode(reason).retry_may_help is retry
    assert DeclineCode(reason).buyer_must_act is buyer
    assert "rid-1" in str(error)


def test_the_decline_table_covers_every_code() -> None:
    assert {DeclineCode(d[0]) for d in DECLINES} == set(DeclineCode)


@pytest.mark.parametrize("reason", [None, "", "Declined", "InvalidParameterValue", "harddeclined"])
def test_decline_code_parse_refuses_other_reasons(reason: str | None) -> None:
    assert DeclineCode.parse(reason) is None
    with pytest.raises(ValueError, match="not a decline code"):
        DeclinedError(400, reason, None, None)


def test_api_error_keeps_status_reason_message_and_request_id() -> None:
    reason = "InvalidChargePermissionStatus"
    error = errors.InvalidChargePermissionStatus(422, reason, "Closed", "r")
    assert (error.status, error.reason_code, error.message, error.request_id) == (
        422,
        reason,
        "Closed",
        "r",
    )
    assert str(error) == "HTTP 422 InvalidChargePermissionStatus: Closed (request id r)"
