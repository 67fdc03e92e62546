"""amazonpay.signing against Amazon's SDK vectors, sign/verify properties and tamper tables."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amazonpay import signing
from amazonpay.signing import Algorithm

# Amazon's vectors, copied verbatim from the team's shared/vectors so the suite runs from a bare
# clone; test_vector_copies_match_shared guards the copy whenever shared/ sits beside the repo.
VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SHARED_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors"
SIGNING_VECTORS = json.loads((VECTORS / "signing-vectors.json").read_text(encoding="utf-8"))
BUTTON_VECTOR = json.loads((VECTORS / "button-signature-vector.json").read_text(encoding="utf-8"))

# The fixed pre-signed headers of the Java SDK's testdata.js (vector file notes).
VECTOR_HEADERS = {
    "accept": "application/json",
    "content-type": "application/json",
    "x-amz-pay-date": "20180524T223710Z",
    "x-amz-pay-host": "pay-api.amazon.eu",
    "x-amz-pay-region": "EU",
}
VECTOR_SIGNED = sorted(VECTOR_HEADERS)

HYPOTHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['name']}/{case['stringToSign'].split(chr(10))[0]}"


def test_vector_file_has_both_algorithms_for_every_case() -> None:
    cases = SIGNING_VECTORS["cases"]
    assert len(cases) == 34
    algorithms = {c["stringToSign"].split("\n")[0] for c in cases}
    assert algorithms == {Algorithm.PSS.value, Algorithm.PSS_V2.value}


@pytest.mark.parametrize(
    "case",
    [c for c in SIGNING_VECTORS["cases"] if c["name"] != "get-slashes"],
    ids=_case_id,
)
def test_sdk_vector_reproduces_canonical_request_and_string_to_sign(case: dict[str, Any]) -> None:
    algorithm = case["stringToSign"].split("\n")[0]
    canonical = signing.canonical_request(
        case["method"],
        case["uri"],
        case["parameters"],
        VECTOR_HEADERS,
        VECTOR_SIGNED,
        case["payload"],
    )
    assert canonical == case["canonicalRequest"]
    assert signing.string_to_sign(algorithm, canonical) == case["stringToSign"]


@pytest.mark.parametrize(
    "case", [c for c in SIGNING_VECTORS["cases"] if c["name"] == "get-slashes"], ids=_case_id
)
def test_get_slashes_gives_our_documented_answer_not_the_java_uri_quirk(
    case: dict[str, Any],
) -> None:
    # Java parses `//foo//` as host `foo` + path `//`; we read it as a path and collapse the runs
    # of `/` (vector notes; docs/amazon-pay-api.md section 13). Everything else must still match.
    canonical = signing.canonical_request(
        case["method"],
        case["uri"],
        case["parameters"],
        VECTOR_HEADERS,
        VECTOR_SIGNED,
        case["payload"],
    )
    expected_lines = case["canonicalRequest"].split("\n")
    expected_lines[1] = "/foo/"
    assert canonical == "\n".join(expected_lines)
    assert canonical != case["canonicalRequest"]
    algorithm = case["stringToSign"].split("\n")[0]
    assert signing.string_to_sign(algorithm, canonical).startswith(algorithm + "\n")
    assert signing.string_to_sign(algorithm, canonical) != case["stringToSign"]


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_button_vector_string_to_sign(algorithm: Algorithm) -> None:
    to_sign = signing.button_string_to_sign(BUTTON_VECTOR["payloadJSON"], algorithm)
    assert to_sign == BUTTON_VECTOR["stringToSign"][algorithm.value]


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_button_signature_verifies_and_rejects_tampering(
    algorithm: Algorithm, private_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    payload = BUTTON_VECTOR["payloadJSON"]
    signature = signing.sign_button_payload(private_key, payload, algorithm)
    assert len(signature) == 344  # 256 bytes, standard Base64 with padding (section 1.8)
    assert signing.verify_button_signature(public_key, payload, signature, algorithm)
    assert not signing.verify_button_signature(public_key, payload + " ", signature, algorithm)
    other = Algorithm.PSS if algorithm is Algorithm.PSS_V2 else Algorithm.PSS_V2
    assert not signing.verify_button_signature(public_key, payload, signature, other)


# -- a signed request as a verifier sees it ---------------------------------------------------


@dataclass(frozen=True)
class Wire:
    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes
    authorization: str


def _sign_request(  # noqa: PLR0917 - mirrors canonical_request's parts
    key: rsa.RSAPrivateKey,
    algorithm: Algorithm,
    method: str,
    path: str,
    pairs: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> Wire:
    names = sorted(headers)
    canonical = signing.canonical_request(method, path, pairs, headers, names, body)
    signature = signing.sign(key, signing.string_to_sign(algorithm, canonical), algorithm)
    auth = signing.authorization_header(
        algorithm, "KEY-1", signing.signed_headers_list(names), signature
    )
    raw_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    # A server sees header names in whatever case the HTTP stack gives it.
    wire_headers = {name.title(): value for name, value in headers.items()}
    return Wire(method, path, raw_query, wire_headers, body, auth)


def _verify_wire(public_key: rsa.RSAPublicKey, wire: Wire) -> bool:
    """Rebuild the canonical request from what was received, as the simulator does (1.12)."""
    auth = signing.parse_authorization(wire.authorization)
    try:
        canonical = signing.canonical_request(
            wire.method, wire.path, wire.raw_query, wire.headers, auth.signed_headers, wire.body
        )
    except KeyError:
        return False
    to_sign = signing.string_to_sign(auth.algorithm, canonical)
    return signing.verify(public_key, to_sign, auth.signature, auth.algorithm)


def _base_headers(date: str = "20261129T101500Z") -> dict[str, str]:
    return {
        "accept": "application/json",
        "content-type": "application/json",
        "x-amz-pay-date": date,
        "x-amz-pay-host": "pay-api.amazon.com",
        "x-amz-pay-idempotency-key": "0123456789abcdef0123456789abcdef",
        "x-amz-pay-region": "na",
    }


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_SEGMENT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=10
)


@st.composite
def requests_to_sign(draw: st.DrawFn) -> dict[str, Any]:
    segments = draw(st.lists(_SEGMENT, max_size=4))
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PATCH", "DELETE"])),
        "path": path,
        "pairs": draw(st.lists(st.tuples(_TEXT, _TEXT), max_size=4)),
        "body": draw(st.binary(max_size=200)),
        "algorithm": draw(st.sampled_from(list(Algorithm))),
    }


@HYPOTHESIS
@given(request=requests_to_sign())
def test_sign_then_verify_round_trips(
    request: dict[str, Any], private_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    wire = _sign_request(private_key, headers=_base_headers(), **request)
    assert _verify_wire(public_key, wire)


@HYPOTHESIS
@given(request=requests_to_sign(), other_body=st.binary(max_size=200))
def test_any_other_body_fails(
    request: dict[str, Any],
    other_body: bytes,
    private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
) -> None:
    assume(other_body != request["body"])
    wire = _sign_request(private_key, headers=_base_headers(), **request)
    assert not _verify_wire(public_key, replace(wire, body=other_body))


@HYPOTHESIS
@given(
    request=requests_to_sign(),
    header=st.sampled_from(sorted(_base_headers())),
    value=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
def test_any_other_signed_header_value_fails(
    request: dict[str, Any],
    header: str,
    value: str,
    private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
) -> None:
    original = _base_headers()[header]
    # Canonicalisation trims and collapses whitespace (section 1.5), so only real changes count.
    assume(" ".join(value.split()) != original)
    wire = _sign_request(private_key, headers=_base_headers(), **request)
    tampered = dict(wire.headers)
    tampered[header.title()] = value
    assert not _verify_wire(public_key, replace(wire, headers=tampered))


@HYPOTHESIS
@given(request=requests_to_sign(), other_segment=_SEGMENT)
def test_any_other_path_fails(
    request: dict[str, Any],
    other_segment: str,
    private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
) -> None:
    wire = _sign_request(private_key, headers=_base_headers(), **request)
    other_path = wire.path.rstrip("/") + "/" + quote(other_segment, safe="")
    assume(signing.canonical_uri(other_path) != signing.canonical_uri(wire.path))
    assert not _verify_wire(public_key, replace(wire, path=other_path))


def _pss_signature(key: rsa.RSAPrivateKey, text: str, salt: int) -> str:
    raw = key.sign(
        text.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt),
        hashes.SHA256(),
    )
    return base64.b64encode(raw).decode()


def _resign(wire: Wire, signature: str) -> Wire:
    auth = signing.parse_authorization(wire.authorization)
    header = signing.authorization_header(
        auth.algorithm, auth.public_key_id, ";".join(auth.signed_headers), signature
    )
    return replace(wire, authorization=header)


def _with_header(name: str, value: str) -> Callable[[Wire], Wire]:
    return lambda w: replace(w, headers={**w.headers, name: value})


def _flip_signature(w: Wire) -> Wire:
    sig = signing.parse_authorization(w.authorization).signature
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 0x01
    return _resign(w, base64.b64encode(bytes(raw)).decode())


def _swap_algorithm(w: Wire) -> Wire:
    return replace(w, authorization=w.authorization.replace("PSS-V2 ", "PSS ", 1))


def _drop_signed_header(w: Wire) -> Wire:
    return replace(w, headers={k: v for k, v in w.headers.items() if k != "X-Amz-Pay-Region"})


def _unsign_header_in_list(w: Wire) -> Wire:
    auth = w.authorization.replace(";x-amz-pay-idempotency-key", "")
    return replace(w, authorization=auth)


TAMPERS: list[tuple[str, Callable[[Wire], Wire]]] = [
    ("body", lambda w: replace(w, body=w.body + b" ")),
    ("method", lambda w: replace(w, method="PUT")),
    ("path", lambda w: replace(w, path=w.path + "x")),
    ("path trailing slash", lambda w: replace(w, path=w.path + "/")),
    ("query", lambda w: replace(w, raw_query="a=2")),
    ("date", _with_header("X-Amz-Pay-Date", "20261129T101501Z")),
    ("host", _with_header("X-Amz-Pay-Host", "pay-api.amazon.eu")),
    ("region", _with_header("X-Amz-Pay-Region", "eu")),
    ("idempotency key", _with_header("X-Amz-Pay-Idempotency-Key", "other")),
    ("signed header missing", _drop_signed_header),
    ("signed header dropped from list", _unsign_header_in_list),
    ("signature bit", _flip_signature),
    ("algorithm designation", _swap_algorithm),
]


@pytest.mark.parametrize(("what", "tamper"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_fails_verification(
    what: str,
    tamper: Callable[[Wire], Wire],
    private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
) -> None:
    wire = _sign_request(
        private_key,
        Algorithm.PSS_V2,
        "POST",
        "/sandbox/v2/checkoutSessions/abc/complete",
        [("a", "1")],
        _base_headers(),
        b'{"chargeAmount":{"amount":"1.00","currencyCode":"USD"}}',
    )
    assert _verify_wire(public_key, wire)  # the untampered request is the control
    assert not _verify_wire(public_key, tamper(wire))


def test_unsigned_header_may_change(
    private_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    wire = _sign_request(private_key, Algorithm.PSS, "GET", "/v2/x", [], _base_headers(), b"")
    assert _verify_wire(public_key, _with_header("User-Agent", "anything")(wire))


def test_other_key_fails(
    private_key: rsa.RSAPrivateKey,
    other_private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
) -> None:
    wire = _sign_request(other_private_key, Algorithm.PSS_V2, "GET", "/", [], _base_headers(), b"")
    assert _verify_wire(other_private_key.public_key(), wire)
    assert not _verify_wire(public_key, wire)


@pytest.mark.parametrize(
    ("algorithm", "wrong_salt"),
    [(Algorithm.PSS, 32), (Algorithm.PSS_V2, 20), (Algorithm.PSS_V2, 0)],
)
def test_wrong_salt_length_fails(
    algorithm: Algorithm,
    wrong_salt: int,
    private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
) -> None:
    # Strict salt per designation (section 1.1): the right string with the wrong salt is rejected.
    to_sign = signing.string_to_sign(algorithm, "anything")
    right = _pss_signature(private_key, to_sign, algorithm.salt_length)
    wrong = _pss_signature(private_key, to_sign, wrong_salt)
    assert signing.verify(public_key, to_sign, right, algorithm)
    assert not signing.verify(public_key, to_sign, wrong, algorithm)


@pytest.mark.parametrize("bad", ["", "not base64!", "AAAA", "=" * 4])
def test_verify_rejects_garbage_signatures(bad: str, public_key: rsa.RSAPublicKey) -> None:
    assert not signing.verify(public_key, "x", bad, Algorithm.PSS)


# -- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/a/b", "/a/b"),
        ("/a//b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../a", "/a"),
        ("/a b", "/a%20b"),
        ("/a%20b", "/a%20b"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%2Fb", "/a%2Fb"),
        ("/\u1234", "/%E1%88%B4"),
        ("/-._~", "/-._~"),
        ("/a+b", "/a%2Bb"),
        ("/v2/checkoutSessions/S01-1234567-1234567", "/v2/checkoutSessions/S01-1234567-1234567"),
        ("/sandbox/v2/checkoutSessions/", "/sandbox/v2/checkoutSessions/"),
    ],
)
def test_canonical_uri(path: str, expected: str) -> None:
    assert signing.canonical_uri(path) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("a=1", "a=1"),
        ("b=1&a=2", "a=2&b=1"),
        ("a=2&a=1", "a=1&a=2"),
        ("A.10=x&A.2=x&A.1=x", "A.1=x&A.10=x&A.2=x"),
        ("a=", "a="),
        ("a", "a="),
        ("a=b%20c", "a=b%20c"),
        ("a=b+c", "a=b%20c"),
        ("a=%2a", "a=%2A"),
        ("a=~", "a=~"),
        ("a=%7E", "a=~"),
        ("k%20=v", "k%20=v"),
        ("a=1&&b=2", "a=1&b=2"),
        ("a=b=c", "a=b%3Dc"),
        (
            "amount=100.50&customInformation=Information%20about%20order",
            "amount=100.50&customInformation=Information%20about%20order",
        ),
    ],
)
def test_canonical_query_from_raw(raw: str, expected: str) -> None:
    assert signing.canonical_query_string(signing.parse_query(raw)) == expected


def test_canonical_query_from_map_of_lists() -> None:
    params = {"customInformation": ["Information about order"], "amount": ["100.50"]}
    assert (
        signing.canonical_query_string(params)
        == "amount=100.50&customInformation=Information%20about%20order"
    )


def test_canonical_headers_trim_and_collapse_whitespace() -> None:
    headers = {"X-B": "  two   words ", "x-a": "1"}
    assert signing.canonical_headers(headers, ["x-a", "x-b"]) == "x-a:1\nx-b:two words\n"
    assert signing.signed_headers_list(["X-B", "x-a", " x-a"]) == "x-a;x-b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "AMZN-PAY-RSASSA-PSS PublicKeyId=K1, SignedHeaders=accept;x-amz-pay-date,"
            " Signature=ab+/=",
            signing.Authorization(Algorithm.PSS, "K1", ("accept", "x-amz-pay-date"), "ab+/="),
        ),
        (
            "  AMZN-PAY-RSASSA-PSS-V2 PublicKeyId=SANDBOX-X, SignedHeaders=a, Signature=QQ==  ",
            signing.Authorization(Algorithm.PSS_V2, "SANDBOX-X", ("a",), "QQ=="),
        ),
    ],
)
def test_parse_authorization(value: str, expected: signing.Authorization) -> None:
    assert signing.parse_authorization(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "AMZN-PAY-RSASSA-PSS",
        "AMZN-PAY-RSASSA-PSS-V3 PublicKeyId=K, SignedHeaders=a, Signature=QQ==",
        "HMAC PublicKeyId=K, SignedHeaders=a, Signature=QQ==",
        "AMZN-PAY-RSASSA-PSS PublicKeyId=K,SignedHeaders=a,Signature=QQ==",
        "AMZN-PAY-RSASSA-PSS PublicKeyId=K, SignedHeaders=a;;b, Signature=QQ==",
        "AMZN-PAY-RSASSA-PSS PublicKeyId=K, SignedHeaders=a, Signature=Q Q",
        "AMZN-PAY-RSASSA-PSS PublicKeyId=K, Signature=QQ==, SignedHeaders=a",
        "AMZN-PAY-RSASSA-PSS PublicKeyId=, SignedHeaders=a, Signature=QQ==",
    ],
)
def test_parse_authorization_rejects(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        signing.parse_authorization(value)


def test_authorization_header_round_trips() -> None:
    header = signing.authorization_header("AMZN-PAY-RSASSA-PSS-V2", "K", "a;b", "QQ==")
    assert header == "AMZN-PAY-RSASSA-PSS-V2 PublicKeyId=K, SignedHeaders=a;b, Signature=QQ=="
    assert signing.parse_authorization(header).signed_headers == ("a", "b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20190923T231908Z", datetime(2019, 9, 23, 23, 19, 8, tzinfo=UTC)),
        ("2026-11-29T09:53:12Z", datetime(2026, 11, 29, 9, 53, 12, tzinfo=UTC)),
        ("2026-11-29T09:53:12.123Z", datetime(2026, 11, 29, 9, 53, 12, 123000, tzinfo=UTC)),
    ],
)
def test_parse_amz_date(value: str, expected: datetime) -> None:
    assert signing.parse_amz_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "20190923T231908",
        "20190923 231908Z",
        "2019-09-23T23:19:08",
        "2019-09-23T23:19:08+00:00",
        "20191323T231908Z",
        "20190923T251908Z",
        "yesterday",
    ],
)
def test_parse_amz_date_rejects(value: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        signing.parse_amz_date(value)


def test_format_amz_date_is_utc_compact() -> None:
    moment = datetime(2026, 1, 2, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert signing.format_amz_date(moment) == "20260102T020506Z"
    assert signing.parse_amz_date(signing.format_amz_date(moment)) == moment
    with pytest.raises(ValueError, match="aware"):
        signing.format_amz_date(datetime(2026, 1, 2))  # naive on purpose


def test_unknown_algorithm_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown signature algorithm"):
        signing.string_to_sign("AMZN-PAY-RSASSA-PKCS1", "x")
    assert Algorithm.parse("AMZN-PAY-RSASSA-PSS-V2").salt_length == 32
    assert Algorithm.PSS.salt_length == 20


def test_key_loading(private_pem: bytes, public_pem: bytes) -> None:
    key = signing.load_private_key(private_pem)
    to_sign = signing.string_to_sign(Algorithm.PSS_V2, "x")
    signature = signing.sign(key, to_sign, Algorithm.PSS_V2)
    assert signing.verify(
        signing.load_public_key(public_pem), to_sign, signature, "AMZN-PAY-RSASSA-PSS-V2"
    )
    with pytest.raises(ValueError, match=r"."):
        signing.load_private_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_vector_copies_match_shared() -> None:
    names = ["signing-vectors.json", "button-signature-vector.json"]
    for name in names:
        ours = (VECTORS / name).read_bytes()
        assert json.loads(ours)  # the copy is there and parses
        shared = SHARED_VECTORS / name
        if shared.exists():
            assert shared.read_bytes() == ours, f"tests/vectors/{name} differs from shared/"
