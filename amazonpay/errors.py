"""The AmazonPayError tree and the HTTP status / reasonCode -> exception class mapping.

Every failure the client reports is one of these; each API error carries the HTTP status,
Amazon's `reasonCode`, its message and the `x-amz-pay-request-id` for support tickets.
Sections cited are those of docs/amazon-pay-api.md.
"""

from __future__ import annotations

from enum import StrEnum


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


class DuplicateIdempotencyKey(InvalidRequestError):  # noqa: N818 - Amazon's reasonCode
    """The idempotency key was used before with a different request (section 7).

    A replay with the same key and body gets the first answer, so this means our own request
    changed under one reference: a bug or a tampered form, never something to retry.
    """


class TransactionAmountExceeded(InvalidRequestError):  # noqa: N818 - Amazon's reasonCode
    """The amount is over what the charge, capture or refund allows (section 5.3)."""


class AuthenticationError(APIError):
    """401/403: InvalidRequestSignature, UnauthorizedAccess, InvalidAccountStatus."""


class NotFoundError(APIError):
    """404: unknown or deleted object (ResourceNotFound)."""


class ConflictError(APIError):
    """409/422: the object is not in a state that allows the operation, or amounts differ."""


class InvalidCheckoutSessionStatus(ConflictError):  # noqa: N818 - Amazon's reasonCode
    """The Checkout Session is already Completed or Canceled (section 5.2)."""


class CheckoutSessionCanceled(ConflictError):  # noqa: N818 - Amazon's reasonCode
    """The buyer canceled or the payment was declined; the session's reasonCode says which."""


class AmountMismatch(ConflictError):  # noqa: N818 - Amazon's reasonCode
    """Complete's chargeAmount differs from the Checkout Session's (section 5.2)."""


class InvalidChargePermissionStatus(ConflictError):  # noqa: N818 - Amazon's reasonCode
    """The Charge Permission is not Chargeable (NonChargeable or Closed; section 6)."""


class InvalidChargeStatus(ConflictError):  # noqa: N818 - Amazon's reasonCode
    """The Charge's state does not allow this capture, cancel or refund."""


class DeclineCode(StrEnum):
    """Why Amazon declined a payment: Create Charge's decline reason codes (section 5.3).

    The same names are a Declined Charge's `statusDetails.reasonCode` (section 6).
    """

    HARD_DECLINED = "HardDeclined"
    SOFT_DECLINED = "SoftDeclined"
    PROCESSING_FAILURE = "ProcessingFailure"
    TRANSACTION_COUNT_EXCEEDED = "TransactionCountExceeded"
    PERIODIC_AMOUNT_EXCEEDED = "PeriodicAmountExceeded"
    MFA_NOT_COMPLETED = "MFANotCompleted"
    PAYMENT_METHOD_NOT_ALLOWED = "PaymentMethodNotAllowed"
    TRANSACTION_TIMED_OUT = "TransactionTimedOut"
    AMAZON_REJECTED = "AmazonRejected"

    @classmethod
    def parse(cls, reason_code: str | None) -> DeclineCode | None:
        """The decline code for a reasonCode, or None when it is not one."""
        if reason_code is None:
            return None
        try:
            return cls(reason_code)
        except ValueError:
            return None

    @property
    def retry_may_help(self) -> bool:
        """Whether a new Create Charge (with a new idempotency key) may succeed.

        Only for SoftDeclined and ProcessingFailure: section 6 says to re-check that the Charge
        Permission is Chargeable and retry. The same key would only replay the decline
        (section 7). The count and periodic limits clear with time, not with a retry now; a
        timeout, a hard decline, a rejection or a missing MFA repeat themselves.
        """
        return self in _RETRYABLE_DECLINES

    @property
    def buyer_must_act(self) -> bool:
        """Whether only the buyer, at Amazon, can make the next charge possible.

        HardDeclined: section 6 sends the buyer to Amazon's page to change the payment method
        and waits for the IPN. PaymentMethodNotAllowed: the same page, as for a NonChargeable
        permission with that reason. MFANotCompleted: the buyer must pass the issuer's
        challenge; no merchant-initiated retry can do that for them (section 6 lists the
        related `MFAFailed` among the reasons the buyer fixes at Amazon).
        """
        return self in _BUYER_DECLINES


_RETRYABLE_DECLINES = frozenset({DeclineCode.SOFT_DECLINED, DeclineCode.PROCESSING_FAILURE})
_BUYER_DECLINES = frozenset(
    {
        DeclineCode.HARD_DECLINED,
        DeclineCode.PAYMENT_METHOD_NOT_ALLOWED,
        DeclineCode.MFA_NOT_COMPLETED,
    }
)


class DeclinedError(APIError):
    """Amazon declined the payment (like Stripe's CardError); `decline_code` says why."""

    def __init__(
        self,
        status: int,
        reason_code: str | None,
        message: str | None,
        request_id: str | None,
    ) -> None:
        decline_code = DeclineCode.parse(reason_code)
        if decline_code is None:
            raise ValueError(f"{reason_code!r} is not a decline code")
        super().__init__(status, reason_code, message, request_id)
        self.decline_code = decline_code

    @property
    def retry_may_help(self) -> bool:
        """See DeclineCode.retry_may_help."""
        return self.decline_code.retry_may_help

    @property
    def buyer_must_act(self) -> bool:
        """See DeclineCode.buyer_must_act."""
        return self.decline_code.buyer_must_act


class RateLimitError(APIError):
    """429: TooManyRequests."""


class ServiceError(APIError):
    """5xx: InternalServerError, ServiceUnavailable."""


# reasonCodes whose meaning is fixed whatever status Amazon sends them with (the docs disagree on
# 400 vs 422 for CheckoutSessionCanceled, and ProcessingFailure may come as a 500:
# docs/amazon-pay-api.md section 5.3).
_REASON_CLASSES: dict[str, type[APIError]] = {
    "InvalidCheckoutSessionStatus": InvalidCheckoutSessionStatus,
    "CheckoutSessionCanceled": CheckoutSessionCanceled,
    "AmountMismatch": AmountMismatch,
    "InvalidChargePermissionStatus": InvalidChargePermissionStatus,
    "InvalidChargeStatus": InvalidChargeStatus,
    "DuplicateIdempotencyKey": DuplicateIdempotencyKey,
    "TransactionAmountExceeded": TransactionAmountExceeded,
    "InvalidRequestSignature": AuthenticationError,
    "UnauthorizedAccess": AuthenticationError,
    "ResourceNotFound": NotFoundError,
    "TooManyRequests": RateLimitError,
    **{code.value: DeclinedError for code in DeclineCode},
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
