"""The AmazonPayError tree and the HTTP status / reasonCode -> exception class mapping.

Every failure the client reports is one of these; each API error carries the HTTP status,
Amazon's `reasonCode`, its message and the `x-amz-pay-request-id` for support tickets.
"""

from __future__ import annotations


class AmazonPayError(Exception):
    """Base of everything this library raises."""


class ConfigurationError(AmazonPayError):
    """Bad key, unknown region or algorithm: raised when the client is built, not per call."""


class APIConnectionError(AmazonPayError):
    """No HTTP response: refused, reset or timed out (after any retries).

    `may_have_been_applied` is True when the request reached the wire and Amazon may have acted
    on it (a read timeout or a reset after sending); False when it provably never left
    (connection refused, DNS failure, connect timeout). A caller reconciles the former.
    """

    def __init__(self, message: str, *, may_have_been_applied: bool) -> None:
        super().__init__(message)
        self.may_have_been_applied = may_have_been_applied


class NotificationError(AmazonPayError):
    """An IPN (SNS) message that is malformed, untrusted, stale or whose signature fails."""


class APIError(AmazonPayError):
    """Amazon answered with an error status."""

    def __init__(
        self,
        status: int,
        reason_code: str | None,
        message: str | None,
        request_id: str | None,
    ) -> None:
        self.status = status
        self.reason_code = reason_code
        self.message = message
        self.request_id = request_id
        super().__init__(
            f"HTTP {status} {reason_code or 'unknown'}: {message or ''}"
            f" (request id {request_id or 'none'})"
        )


class InvalidRequestError(APIError):
    """400: malformed request, bad parameter, duplicate idempotency key."""


class AuthenticationError(APIError):
    """401/403: InvalidRequestSignature, UnauthorizedAccess, InvalidAccountStatus."""


class NotFoundError(APIError):
    """404: unknown or deleted object (ResourceNotFound)."""


class ConflictError(APIError):
    """409/422: AmountMismatch, InvalidCheckoutSessionStatus, CheckoutSessionCanceled."""


class RateLimitError(APIError):
    """429: TooManyRequests."""


class ServiceError(APIError):
    """5xx: InternalServerError, ServiceUnavailable, ProcessingFailure."""


# reasonCodes whose meaning is fixed whatever status Amazon sends them with (the docs disagree on
# 400 vs 422 for CheckoutSessionCanceled: docs/amazon-pay-api.md section 5.3).
_REASON_CLASSES: dict[str, type[APIError]] = {
    "InvalidCheckoutSessionStatus": ConflictError,
    "CheckoutSessionCanceled": ConflictError,
    "AmountMismatch": ConflictError,
    "InvalidChargePermissionStatus": ConflictError,
    "InvalidChargeStatus": ConflictError,
    "InvalidRequestSignature": AuthenticationError,
    "UnauthorizedAccess": AuthenticationError,
    "ResourceNotFound": NotFoundError,
    "TooManyRequests": RateLimitError,
}


def error_class(status: int, reason_code: str | None) -> type[APIError]:
    """The exception class for an error response."""
    if reason_code and reason_code in _REASON_CLASSES:
        return _REASON_CLASSES[reason_code]
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status in (409, 422):
        return ConflictError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServiceError
    return InvalidRequestError
