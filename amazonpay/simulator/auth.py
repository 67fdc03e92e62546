"""Request authentication the way Amazon does it (docs/amazon-pay-api.md section 1.12).

Rebuilds the canonical request from the headers named in SignedHeaders, with the values actually
received and the list itself verbatim, verifies RSASSA-PSS with the salt length the algorithm
names (strict, section 1.1), then checks the environment, the `x-amz-pay-date` window and the
idempotency key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay import signing
from amazonpay.simulator.state import LIVE, SANDBOX, SimulatorError

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # section 7: 1-32 chars [A-Za-z0-9_-]
DATE_HEADER = "x-amz-pay-date"
IDEMPOTENCY_HEADER = "x-amz-pay-idempotency-key"


@dataclass(frozen=True)
class Caller:
    """Who signed an accepted request and for which environment."""

    public_key_id: str
    environment: str
    algorithm: signing.Algorithm
    idempotency_key: str | None


def key_environment(public_key_id: str) -> str | None:
    """`SANDBOX-…` / `LIVE-…` keys carry their environment (section 1.11), others do not."""
    upper = public_key_id.upper()
    if upper.startswith("SANDBOX"):
        return SANDBOX
    if upper.startswith("LIVE"):
        return LIVE
    return None


def _canonical_request(  # noqa: PLR0917 - the six canonical-request parts
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The canonical request as the signer built it (section 1.12 step 4).

    Each named header is looked up case-insensitively, but the SignedHeaders line is the list
    exactly as sent: the Node SDK joins the names in the caller's case (section 1.5), and its
    signature covers that text.
    """
    return "\n".join(
        [
            method.upper(),
            signing.canonical_uri(raw_path),
            signing.canonical_query_string(signing.parse_query(raw_query)),
            signing.canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            signing.payload_hash(body),
        ]
    )


def _forbidden(message: str) -> SimulatorError:
    return SimulatorError(403, "InvalidRequestSignature", message)


def authenticate(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    path_environment: str | None,
    public_keys: Mapping[str, rsa.RSAPublicKey],
    now: datetime | Sequence[datetime],
    max_future: timedelta,
    max_age: timedelta,
) -> Caller:
    """Accept a signed API request or raise the SimulatorError Amazon would answer with.

    `headers` maps lower-case names to received values; `path_environment` is Sandbox/Live for
    `/sandbox/v2` and `/live/v2`, None for the unified `/v2` path.
    """
    header = headers.get("authorization")
    if header is None:
        raise SimulatorError(400, "MissingHeader", "The authorization header is missing")
    try:
        parsed = signing.parse_authorization(header)
    except ValueError as exc:
        raise SimulatorError(
            400, "InvalidHeaderValue", f"The authorization header is invalid: {exc}"
        ) from None
    public_key = public_keys.get(parsed.public_key_id)
    if public_key is None:
        raise _forbidden(f"Unknown public key id {parsed.public_key_id}")

    # Section 1.11: the key prefix decides the environment on /v2 and must agree elsewhere.
    from_key = key_environment(parsed.public_key_id)
    if path_environment is None:
        if from_key is None:
            raise SimulatorError(
                400,
                "InvalidRequest",
                "A public key id without a SANDBOX-/LIVE- prefix must use /sandbox/v2 or /live/v2",
            )
        environment = from_key
    else:
        if from_key is not None and from_key != path_environment:
            raise SimulatorError(
                400,
                "InvalidRequest",
                f"The public key id {parsed.public_key_id} belongs to the {from_key} environment "
                f"but the request was sent to the {path_environment} endpoint",
            )
        environment = path_environment

    names = [n.lower() for n in parsed.signed_headers]
    if DATE_HEADER not in names:
        raise SimulatorError(400, "MissingHeader", f"{DATE_HEADER} must be a signed header")
    missing = [n for n in names if n not in headers]
    if missing:
        raise _forbidden(f"The signed header {missing[0]} is not present in the request")
    canonical = _canonical_request(
        method, raw_path, raw_query, headers, parsed.signed_headers, body
    )
    to_sign = signing.string_to_sign(parsed.algorithm, canonical)
    if not signing.verify(public_key, to_sign, parsed.signature, parsed.algorithm):
        raise _forbidden(
            "The request signature we calculated does not match the signature you provided. "
            "Check your private key, the signed headers and the algorithm."
        )

    # Section 1.10: compact or ISO form, never in the future, not older than max_age.
    date_value = headers[DATE_HEADER]
    try:
        signed_at = signing.parse_amz_date(date_value)
    except ValueError:
        raise SimulatorError(
            400,
            "InvalidHeaderValue",
            f"The value {date_value} provided for {DATE_HEADER} is invalid",
        ) from None
    # A date is fresh if it is within the window of any reference time: the real clock, an
    # injected clock a test signs with, or the clock advanced through the control API.
    references = [now] if isinstance(now, datetime) else list(now)
    if all(signed_at > reference + max_future for reference in references):
        raise SimulatorError(
            400,
            "InvalidHeaderValue",
            f"The value {date_value} provided for {DATE_HEADER} should not be in future",
        )
    if not any(
        reference - max_age <= signed_at <= reference + max_future for reference in references
    ):
        raise SimulatorError(
            400,
            "InvalidHeaderValue",
            f"The value {date_value} provided for {DATE_HEADER} is too old "
            f"(more than {int(max_age.total_seconds() // 60)} minutes)",
        )

    # Section 7: on POST a key must be well formed and covered by the signature.
    key = headers.get(IDEMPOTENCY_HEADER)
    if key is not None and method.upper() == "POST":
        if IDEMPOTENCY_HEADER not in names:
            raise SimulatorError(
                400, "InvalidHeaderValue", f"{IDEMPOTENCY_HEADER} must be a signed header"
            )
        if not IDEMPOTENCY_KEY.match(key):
            raise SimulatorError(
                400,
                "InvalidHeaderValue",
                f"The value provided for {IDEMPOTENCY_HEADER} must be 1-32 characters "
                "of A-Z, a-z, 0-9, - and _",
            )
    elif method.upper() != "POST":
        key = None
    return Caller(parsed.public_key_id, environment, parsed.algorithm, key)
