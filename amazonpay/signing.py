"""Amazon Pay API v2 request and button signing: canonical request, string to sign, RSA-PSS.

Pure functions with no I/O and no clock: the caller passes the timestamp. The client signs with
these functions and the offline simulator verifies with them, and fixed vectors from Amazon's
SDKs pin them (docs/amazon-pay-api.md section 1 and 13).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "EMPTY_PAYLOAD_HASH",
    "Algorithm",
    "Authorization",
    "authorization_header",
    "button_string_to_sign",
    "canonical_headers",
    "canonical_query_string",
    "canonical_request",
    "canonical_uri",
    "format_amz_date",
    "load_private_key",
    "load_public_key",
    "parse_amz_date",
    "parse_authorization",
    "parse_query",
    "payload_hash",
    "sign",
    "sign_button_payload",
    "signed_headers_list",
    "string_to_sign",
    "verify",
    "verify_button_signature",
]

EMPTY_PAYLOAD_HASH = hashlib.sha256(b"").hexdigest()

# RFC 3986 unreserved characters stay as they are; everything else is %XX with upper-case hex.
_UNRESERVED = "-_.~"


class Algorithm(StrEnum):
    """The two signature designations; they differ only in the PSS salt length (section 1.1)."""

    PSS = "AMZN-PAY-RSASSA-PSS"
    PSS_V2 = "AMZN-PAY-RSASSA-PSS-V2"

    @property
    def salt_length(self) -> int:
        return 20 if self is Algorithm.PSS else 32

    @classmethod
    def parse(cls, value: str) -> Algorithm:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown signature algorithm {value!r}") from None


@dataclass(frozen=True)
class Authorization:
    """The parts of an `authorization` header (section 1.9)."""

    algorithm: Algorithm
    public_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def _encode(text: str, safe: str = _UNRESERVED) -> str:
    return quote(text, safe=safe, encoding="utf-8", errors="strict")


def canonical_uri(path: str) -> str:
    """RFC 3986 normalised, percent-encoded request path (section 1.3).

    Runs of `/` collapse, `.` and `..` segments are resolved, each segment is decoded once and
    re-encoded with upper-case hex, so `/a%2fb` and `/a%2Fb` give the same result. Empty -> `/`.
    """
    if not path:
        return "/"
    trailing = path.endswith("/")
    segments: list[str] = []
    for raw in path.split("/"):
        if raw in ("", "."):
            continue
        if raw == "..":
            if segments:
                segments.pop()
            continue
        segments.append(_encode(unquote(raw, errors="strict")))
    result = "/" + "/".join(segments)
    if trailing and segments:
        result += "/"
    return result


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Split a raw query string into decoded (key, value) pairs, keeping repeats and empties."""
    pairs: list[tuple[str, str]] = []
    if not raw_query:
        return pairs
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key.replace("+", "%20")), unquote(value.replace("+", "%20"))))
    return pairs


def canonical_query_string(
    params: Mapping[str, Sequence[str]] | Iterable[tuple[str, str]],
) -> str:
    """Sorted, RFC 3986 encoded `key=value` pairs joined with `&` (section 1.4).

    Accepts a map of key -> list of values (the vectors' form) or decoded pairs. Pairs sort by
    encoded key, then encoded value (ordinal), so `A.1 < A.10 < A.2` as in Amazon's Java SDK.
    """
    items: Iterable[tuple[str, str]]
    if isinstance(params, Mapping):
        items = [(k, v) for k, values in params.items() for v in values]
    else:
        items = params
    encoded = sorted((_encode(k), _encode(v)) for k, v in items)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _header_value(value: str) -> str:
    # Java/.NET trim and collapse whitespace; PHP/Node send values that never need it.
    return " ".join(value.split())


def signed_headers_list(names: Iterable[str]) -> str:
    """Lower-case header names, sorted and joined with `;`."""
    return ";".join(sorted({n.strip().lower() for n in names}))


def canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    """`name:value\\n` for each signed header, in the order given (section 1.5).

    A verifier passes the names from SignedHeaders as received; a signer passes them sorted.
    Missing headers raise KeyError, which a verifier turns into a signature failure.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    return "".join(
        f"{name.lower()}:{_header_value(lowered[name.lower()])}\n" for name in signed_headers
    )


def payload_hash(body: bytes | str) -> str:
    """Lower-case hex SHA-256 of the exact body bytes (section 1.6)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return hashlib.sha256(data).hexdigest()


def canonical_request(  # noqa: PLR0917 - mirrors the six canonical-request parts
    method: str,
    path: str,
    query: Mapping[str, Sequence[str]] | Iterable[tuple[str, str]] | str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes | str,
) -> str:
    """The six canonical-request parts joined with `\\n` (section 1.2).

    `query` is a raw query string, a map of lists or decoded pairs. `signed_headers` lists the
    header names in the order they appear in SignedHeaders.
    """
    query_pairs = parse_query(query) if isinstance(query, str) else query
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query_string(query_pairs),
            canonical_headers(headers, signed_headers),
            ";".join(name.lower() for name in signed_headers),
            payload_hash(body),
        ]
    )


def string_to_sign(algorithm: Algorithm | str, canonical: str) -> str:
    """Algorithm designation, newline, hex SHA-256 of the canonical request (section 1.7)."""
    alg = Algorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
    return f"{alg.value}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


# The padding and hash descriptions hold no state, so one of each serves every signature; the
# client signs on every call, where building them each time showed in the profile.
_SHA256 = hashes.SHA256()
_PSS = {
    alg: padding.PSS(mgf=padding.MGF1(_SHA256), salt_length=alg.salt_length) for alg in Algorithm
}


def _pss(algorithm: Algorithm) -> padding.PSS:
    return _PSS[algorithm]


def sign(private_key: rsa.RSAPrivateKey, to_sign: str, algorithm: Algorithm | str) -> str:
    """RSASSA-PSS/SHA-256 signature of the string to sign, standard Base64 (section 1.8)."""
    alg = Algorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
    raw = private_key.sign(to_sign.encode("utf-8"), _pss(alg), _SHA256)
    return base64.b64encode(raw).decode("ascii")


def verify(
    public_key: rsa.RSAPublicKey, to_sign: str, signature_b64: str, algorithm: Algorithm | str
) -> bool:
    """True when the signature is valid for this string with the algorithm's exact salt length."""
    try:
        alg = Algorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
        raw = base64.b64decode(signature_b64.encode("ascii"), validate=True)
        public_key.verify(raw, to_sign.encode("utf-8"), _pss(alg), _SHA256)
    except (InvalidSignature, ValueError, binascii.Error, UnicodeEncodeError):
        return False
    return True


def authorization_header(
    algorithm: Algorithm | str, public_key_id: str, signed_headers: str, signature: str
) -> str:
    """`<ALG> PublicKeyId=<id>, SignedHeaders=<a;b>, Signature=<b64>` (section 1.9)."""
    alg = Algorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
    return (
        f"{alg.value} PublicKeyId={public_key_id}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


_AUTHORIZATION = re.compile(
    r"^(?P<alg>\S+) PublicKeyId=(?P<key>[^,\s]+), SignedHeaders=(?P<headers>[^,\s]+), "
    r"Signature=(?P<sig>[A-Za-z0-9+/=]+)$"
)


def parse_authorization(value: str) -> Authorization:
    """Parse an `authorization` header; ValueError names what is wrong."""
    match = _AUTHORIZATION.match(value.strip())
    if match is None:
        raise ValueError("malformed authorization header")
    algorithm = Algorithm.parse(match["alg"])
    names = tuple(match["headers"].split(";"))
    if any(not n for n in names):
        raise ValueError("empty name in SignedHeaders")
    return Authorization(algorithm, match["key"], names, match["sig"])


def button_string_to_sign(payload_json: str, algorithm: Algorithm | str) -> str:
    """Algorithm, newline, hex SHA-256 of the exact payloadJSON text (section 3)."""
    alg = Algorithm.parse(algorithm) if isinstance(algorithm, str) else algorithm
    return f"{alg.value}\n{payload_hash(payload_json)}"


def sign_button_payload(
    private_key: rsa.RSAPrivateKey, payload_json: str, algorithm: Algorithm | str
) -> str:
    """The static signature that goes into `createCheckoutSessionConfig.signature`."""
    return sign(private_key, button_string_to_sign(payload_json, algorithm), algorithm)


def verify_button_signature(
    public_key: rsa.RSAPublicKey, payload_json: str, signature_b64: str, algorithm: Algorithm | str
) -> bool:
    try:
        to_sign = button_string_to_sign(payload_json, algorithm)
    except ValueError:
        return False
    return verify(public_key, to_sign, signature_b64, algorithm)


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Parse a PEM RSA private key (PKCS#1 or PKCS#8). Costly (~40 ms): do it once per process."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key is not an RSA key")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the public key is not an RSA key")
    return key


def format_amz_date(moment: datetime) -> str:
    """`YYYYMMDDTHHMMSSZ` in UTC (section 1.10)."""
    if moment.tzinfo is None:
        raise ValueError("x-amz-pay-date needs an aware datetime")
    utc = moment.astimezone(UTC)
    # The fields by hand: strftime costs about three times as much, once per signed call.
    return (
        f"{utc.year:04d}{utc.month:02d}{utc.day:02d}"
        f"T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}Z"
    )


_COMPACT_DATE = re.compile(r"^\d{8}T\d{6}Z$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def parse_amz_date(value: str) -> datetime:
    """Accept the compact form and the ISO form the Node SDK sends (section 15)."""
    if _COMPACT_DATE.match(value):
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if _ISO_DATE.match(value):
        fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in value else "%Y-%m-%dT%H:%M:%SZ"
        return datetime.strptime(value, fmt).replace(tzinfo=UTC)
    raise ValueError(f"x-amz-pay-date {value!r} is not YYYYMMDDTHHMMSSZ")
