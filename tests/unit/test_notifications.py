"""IPN parsing and SNS signature verification (docs/amazon-pay-api.md section 10).

Envelopes are signed here the way SNS signs them, with our own key and self-signed certificate;
the last tests take real messages from the simulator's notifier over HTTP.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from amazonpay.client import AmazonPayClient, RetryPolicy
from amazonpay.errors import AmazonPayError, NotificationError
from amazonpay.models import Price
from amazonpay.notifications import (
    MAX_JSON_DEPTH,
    MAX_NOTIFICATION_BYTES,
    IpnMessage,
    Notification,
    NotificationVerifier,
    confirm_subscription,
    fetch_certificate,
    parse_notification,
    sns_string_to_sign,
)
from amazonpay.simulator import (
    SIMULATOR_MERCHANT_ID,
    SIMULATOR_STORE_ID,
    Simulator,
    serve_in_thread,
)
from tests.support.certs import self_signed_certificate
from tests.support.receiver import IpnReceiver, ipn_receiver

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:amazon-pay-ipn"
MERCHANT = "A3URCZVLDMDI45"
INNER = {
    "MerchantID": MERCHANT,
    "ObjectType": "CHARGE",
    "ObjectId": "S01-1234567-1234567-C123456",
    "ChargePermissionId": "S01-1234567-1234567",
    "NotificationType": "STATE_CHANGE",
    "NotificationId": "b3f9a5c0e1d24e3f",
    "NotificationVersion": "V2",
}


class Signer:
    """An SNS stand-in: an RSA key with a self-signed certificate, signing like SNS does."""

    def __init__(self, *, not_before: datetime = NOW - timedelta(days=1), days: int = 30) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        certificate = self_signed_certificate(
            self.key, "sns.amazonaws.com", not_before, not_before + timedelta(days=days)
        )
        self.pem = certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, envelope: dict[str, str], version: str | None = None) -> dict[str, str]:
        """Set SignatureVersion (if given) and Signature over the SNS string to sign."""
        if version is not None:
            envelope["SignatureVersion"] = version
        digest = hashes.SHA256() if envelope["SignatureVersion"] == "2" else hashes.SHA1()  # noqa: S303
        raw = self.key.sign(sns_string_to_sign(envelope).encode(), padding.PKCS1v15(), digest)
        envelope["Signature"] = base64.b64encode(raw).decode("ascii")
        return envelope


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return Signer()


def envelope(
    signer: Signer,
    *,
    version: str = "1",
    timestamp: datetime = NOW - timedelta(seconds=30),
    **fields: str,
) -> dict[str, str]:
    data = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(INNER),
        "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.") + "123Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    data.update(fields)
    return signer.sign(data)


class Certificates:
    """An injected fetcher: serves PEMs by URL and counts the fetches."""

    def __init__(self, pems: dict[str, bytes], delay: float = 0.0) -> None:
        self.pems = pems
        self.delay = delay
        self.fetched: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, url: str) -> bytes:
        with self._lock:
            self.fetched.append(url)
        time.sleep(self.delay)
        return self.pems[url]


@pytest.fixture
def certificates(signer: Signer) -> Certificates:
    return Certificates({CERT_URL: signer.pem})


def make_verifier(certificates: Callable[[str], bytes], **options: Any) -> NotificationVerifier:
    return NotificationVerifier(certificates, clock=lambda: NOW, **options)


# -- string to sign ---------------------------------------------------------------------------


def test_string_to_sign_of_a_notification_follows_the_fixed_key_order() -> None:
    data = {
        "Type": "Notification",
        "TopicArn": "arn",
        "Timestamp": "2026-11-29T10:00:00.000Z",
        "Subject": "hello",
        "MessageId": "m-1",
        "Message": '{"a": 1}',
        "SignatureVersion": "1",
        "Signature": "ignored",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://unsubscribe",
    }
    assert sns_string_to_sign(data) == (
        'Message\n{"a": 1}\nMessageId\nm-1\nSubject\nhello\n'
        "Timestamp\n2026-11-29T10:00:00.000Z\nTopicArn\narn\nType\nNotification\n"
    )


def test_string_to_sign_of_a_subscription_confirmation_includes_url_and_token() -> None:
    data = {
        "Type": "SubscriptionConfirmation",
        "Token": "tok",
        "SubscribeURL": "https://sub",
        "TopicArn": "arn",
        "Timestamp": "t",
        "MessageId": "m",
        "Message": "confirm",
    }
    assert sns_string_to_sign(data) == (
        "Message\nconfirm\nMessageId\nm\nSubscribeURL\nhttps://sub\nTimestamp\nt\n"
        "Token\ntok\nTopicArn\narn\nType\nSubscriptionConfirmation\n"
    )
    parsed = parse_notification(
        json.dumps(
            {
                **data,
                "SignatureVersion": "1",
                "Signature": "x",
                "SigningCertURL": CERT_URL,
                "Timestamp": "2026-11-29T10:00:00Z",
            }
        )
    )
    assert sns_string_to_sign(parsed) == sns_string_to_sign(dict(parsed.envelope))


# -- verification -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_genuine_notification_verifies(
    signer: Signer, certificates: Certificates, version: str
) -> None:
    verifier = make_verifier(certificates, expected_topic_arns=frozenset({TOPIC}))
    verifier.verify(parse_notification(json.dumps(envelope(signer, version=version)).encode()))


def _set(key: str, value: str) -> Callable[[dict[str, str], Signer, Signer], None]:
    def tamper(data: dict[str, str], signer: Signer, stranger: Signer) -> None:
        data[key] = value

    return tamper


def _resigned(key: str, value: str) -> Callable[[dict[str, str], Signer, Signer], None]:
    """Change a field and sign again with the genuine key: only a rule, not the signature, fails."""

    def tamper(data: dict[str, str], signer: Signer, stranger: Signer) -> None:
        data[key] = value
        signer.sign(data)

    return tamper


def _flip_signature(data: dict[str, str], signer: Signer, stranger: Signer) -> None:
    raw = bytearray(base64.b64decode(data["Signature"]))
    raw[10] ^= 0x01
    data["Signature"] = base64.b64encode(bytes(raw)).decode()


def _stranger_signs(data: dict[str, str], signer: Signer, stranger: Signer) -> None:
    stranger.sign(data)


def _add_subject(data: dict[str, str], signer: Signer, stranger: Signer) -> None:
    data["Subject"] = "added after signing"


def _claim_other_version(data: dict[str, str], signer: Signer, stranger: Signer) -> None:
    data["SignatureVersion"] = "2"  # signed with SHA1 as version 1


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_other_inner = json.dumps({**INNER, "NotificationType": "ATTRIBUTE_CHANGE"})

TAMPERS: list[Any] = [
    pytest.param(_set("Message", _other_inner), "does not verify", id="message"),
    pytest.param(_set("MessageId", str(uuid.uuid4())), "does not verify", id="message-id"),
    pytest.param(
        _set("Timestamp", _stamp(NOW - timedelta(seconds=5))), "does not verify", id="timestamp"
    ),
    pytest.param(
        _set("TopicArn", TOPIC.replace("123456789012", "999999999999")),
        "does not verify",
        id="topic-arn",
    ),
    pytest.param(_set("Type", "UnsubscribeConfirmation"), "does not verify", id="type"),
    pytest.param(_add_subject, "does not verify", id="subject-added"),
    pytest.param(_flip_signature, "does not verify", id="signature-bit"),
    pytest.param(_set("Signature", "not base64!"), "not Base64", id="signature-not-base64"),
    pytest.param(_stranger_signs, "does not verify", id="signed-by-another-key"),
    pytest.param(_claim_other_version, "does not verify", id="version-1-claims-2"),
    pytest.param(_resigned("SignatureVersion", "3"), "SignatureVersion", id="version-3"),
    pytest.param(
        _set("SigningCertURL", CERT_URL.replace("amazonaws.com", "amazonaws.example")),
        "SigningCertURL",
        id="cert-host-not-amazonaws",
    ),
    pytest.param(
        _set("SigningCertURL", "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"),
        "SigningCertURL",
        id="cert-host-suffix",
    ),
    pytest.param(
        _set("SigningCertURL", "https://sns.us-east-1.amazonaws.com@evil.example/cert.pem"),
        "SigningCertURL",
        id="cert-host-userinfo",
    ),
    pytest.param(
        _set("SigningCertURL", "https://sns.ab.amazonaws.com/cert.pem"),
        "SigningCertURL",
        id="cert-host-short-region",
    ),
    pytest.param(
        _set("SigningCertURL", "https://s3.us-east-1.amazonaws.com/cert.pem"),
        "SigningCertURL",
        id="cert-host-not-sns",
    ),
    pytest.param(
        _set("SigningCertURL", CERT_URL.replace("https://", "http://")),
        "SigningCertURL",
        id="cert-scheme-http",
    ),
    pytest.param(
        _set("SigningCertURL", CERT_URL.replace(".pem", ".txt")),
        "SigningCertURL",
        id="cert-suffix",
    ),
    pytest.param(_set("SigningCertURL", CERT_URL + "?x=.pem"), "SigningCertURL", id="cert-query"),
    pytest.param(
        _set("SigningCertURL", CERT_URL.replace(".com/", ".com:8443/")),
        "SigningCertURL",
        id="cert-port",
    ),
    pytest.param(
        _resigned("Timestamp", _stamp(NOW - timedelta(hours=1, seconds=1))),
        "too old",
        id="stale-timestamp",
    ),
    pytest.param(
        _resigned("Timestamp", _stamp(NOW + timedelta(minutes=6))),
        "future",
        id="future-timestamp",
    ),
]


@pytest.mark.parametrize(("tamper", "reason"), TAMPERS)
def test_a_tampered_or_untrusted_notification_is_refused(
    signer: Signer,
    stranger: Signer,
    certificates: Certificates,
    tamper: Callable[[dict[str, str], Signer, Signer], None],
    reason: str,
) -> None:
    data = envelope(signer)
    tamper(data, signer, stranger)
    with pytest.raises(NotificationError, match=reason) as caught:
        make_verifier(certificates).verify(parse_notification(json.dumps(data)))
    assert isinstance(caught.value, AmazonPayError)
    if reason == "SigningCertURL":
        assert certificates.fetched == []  # an untrusted URL is never fetched


def test_an_unexpected_topic_is_refused_even_when_signed(
    signer: Signer, certificates: Certificates
) -> None:
    verifier = make_verifier(certificates, expected_topic_arns=frozenset({TOPIC}))
    other = envelope(signer, TopicArn="arn:aws:sns:us-east-1:999999999999:someone-else")
    with pytest.raises(NotificationError, match="TopicArn"):
        verifier.verify(parse_notification(json.dumps(other)))


def test_max_age_and_clock_are_configurable(signer: Signer, certificates: Certificates) -> None:
    data = envelope(signer, timestamp=NOW - timedelta(minutes=10))
    notification = parse_notification(json.dumps(data))
    make_verifier(certificates).verify(notification)
    with pytest.raises(NotificationError, match="too old"):
        make_verifier(certificates, max_age=timedelta(minutes=5)).verify(notification)
    later = NotificationVerifier(certificates, clock=lambda: NOW + timedelta(hours=2))
    with pytest.raises(NotificationError, match="too old"):
        later.verify(notification)


def test_a_certificate_outside_its_validity_is_refused(signer: Signer) -> None:
    expired = Signer(not_before=NOW - timedelta(days=10), days=5)
    verifier = make_verifier(Certificates({CERT_URL: expired.pem}))
    with pytest.raises(NotificationError, match="not valid"):
        verifier.verify(parse_notification(json.dumps(envelope(expired))))


@pytest.mark.parametrize(
    ("fetch", "reason"),
    [
        pytest.param(lambda url: b"not a certificate", "not a PEM", id="garbage"),
        pytest.param(lambda url: b"", "not a PEM", id="empty"),
    ],
)
def test_an_unreadable_certificate_is_refused(
    signer: Signer, fetch: Callable[[str], bytes], reason: str
) -> None:
    with pytest.raises(NotificationError, match=reason):
        make_verifier(fetch).verify(parse_notification(json.dumps(envelope(signer))))


def test_a_failed_fetch_is_an_error_and_is_not_cached(signer: Signer) -> None:
    calls: list[str] = []

    def flaky(url: str) -> bytes:
        calls.append(url)
        if len(calls) == 1:
            raise requests.ConnectTimeout("timed out")
        return signer.pem

    verifier = make_verifier(flaky)
    notification = parse_notification(json.dumps(envelope(signer)))
    with pytest.raises(NotificationError, match="could not fetch") as caught:
        verifier.verify(notification)
    assert isinstance(caught.value.__cause__, requests.ConnectTimeout)
    verifier.verify(notification)
    assert len(calls) == 2


def test_certificates_are_fetched_once_per_url_across_threads(signer: Signer) -> None:
    certificates = Certificates({CERT_URL: signer.pem}, delay=0.05)
    verifier = make_verifier(certificates)
    notifications = [parse_notification(json.dumps(envelope(signer))) for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(notifications))

    def run(notification: Notification) -> None:
        start.wait()
        try:
            verifier.verify(notification)
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in notifications]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert certificates.fetched == [CERT_URL]


def test_the_certificate_cache_is_bounded(signer: Signer) -> None:
    urls = [f"https://sns.us-east-{i}.amazonaws.com/cert-{i}.pem" for i in range(1, 4)]
    certificates = Certificates(dict.fromkeys(urls, signer.pem))
    verifier = make_verifier(certificates, max_cached_certificates=2)
    for url in [*urls, urls[2], urls[0]]:
        verifier.verify(parse_notification(json.dumps(envelope(signer, SigningCertURL=url))))
    # 1, 2, 3 fetched; 3 is cached; 1 was evicted when 3 came in, so it is fetched again.
    assert certificates.fetched == [urls[0], urls[1], urls[2], urls[0]]


def test_an_allow_listed_dev_url_is_trusted_and_nothing_else_from_its_host(signer: Signer) -> None:
    dev_url = "http://127.0.0.1:8443/_simulator/sns-cert.pem"
    certificates = Certificates({dev_url: signer.pem})
    data = envelope(signer, SigningCertURL=dev_url)
    with pytest.raises(NotificationError, match="SigningCertURL"):
        make_verifier(certificates).verify(parse_notification(json.dumps(data)))
    verifier = make_verifier(certificates, allow_cert_urls=[dev_url])
    verifier.verify(parse_notification(json.dumps(data)))
    sibling = envelope(signer, SigningCertURL="http://127.0.0.1:8443/other.pem")
    with pytest.raises(NotificationError, match="SigningCertURL"):
        verifier.verify(parse_notification(json.dumps(sibling)))


def test_china_region_certificate_hosts_are_trusted(signer: Signer) -> None:
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem"
    verifier = make_verifier(Certificates({url: signer.pem}))
    verifier.verify(parse_notification(json.dumps(envelope(signer, SigningCertURL=url))))


def test_verifier_options_are_checked() -> None:
    with pytest.raises(TypeError):
        NotificationVerifier(fetch_certificate, allow_cert_urls="http://127.0.0.1/x.pem")
    with pytest.raises(ValueError, match="max_age"):
        NotificationVerifier(fetch_certificate, max_age=timedelta(0))
    with pytest.raises(ValueError, match="max_cached"):
        NotificationVerifier(fetch_certificate, max_cached_certificates=0)


# -- parsing ----------------------------------------------------------------------------------


def test_the_inner_message_is_parsed(signer: Signer) -> None:
    data = envelope(signer)
    notification = parse_notification(json.dumps(data).encode("utf-8"))
    assert notification.type == "Notification"
    assert notification.message_id == data["MessageId"]
    assert notification.topic_arn == TOPIC
    assert notification.timestamp == NOW - timedelta(seconds=30) + timedelta(milliseconds=123)
    assert notification.signature_version == "1"
    assert notification.signing_cert_url == CERT_URL
    assert notification.unsubscribe_url == data["UnsubscribeURL"]
    assert notification.message == IpnMessage(
        merchant_id=MERCHANT,
        object_type="CHARGE",
        object_id="S01-1234567-1234567-C123456",
        charge_permission_id="S01-1234567-1234567",
        notification_type="STATE_CHANGE",
        notification_id="b3f9a5c0e1d24e3f",
        notification_version="V2",
    )
    assert notification.message.raw == INNER
    assert "Signature" not in repr(notification).replace("SignatureVersion", "")


def test_old_style_camel_case_messages_and_lambda_cert_key_are_read(signer: Signer) -> None:
    old = {
        "merchantId": MERCHANT,
        "objectType": "REFUND",
        "objectId": "S01-1-1-R1",
        "chargePermissionId": "S01-1-1",
        "notificationType": "STATE_CHANGE",
        "notificationId": "n1",
        "notificationVersion": "V1",
    }
    data = envelope(signer, Message=json.dumps(old))
    data["SigningCertUrl"] = data.pop("SigningCertURL")
    data["Subject"] = None  # type: ignore[assignment]  # Lambda-style null
    notification = parse_notification(json.dumps(data))
    assert notification.signing_cert_url == CERT_URL
    assert notification.subject is None
    assert notification.message is not None
    assert notification.message.object_type == "REFUND"
    assert notification.message.object_id == "S01-1-1-R1"
    assert notification.message.merchant_id == MERCHANT
    assert notification.message.notification_version == "V1"
    make_verifier(Certificates({CERT_URL: signer.pem})).verify(notification)


@pytest.mark.parametrize(
    "message", ["plain text", "[1, 2]", '"a json string"'], ids=["text", "array", "string"]
)
def test_a_message_that_is_not_a_json_object_has_no_ipn_message(
    signer: Signer, message: str
) -> None:
    notification = parse_notification(json.dumps(envelope(signer, Message=message)))
    assert notification.message is None
    assert notification.message_text == message


def _without(key: str) -> str:
    data = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": TOPIC,
        "Message": "{}",
        "Timestamp": "2026-11-29T10:00:00Z",
        "SignatureVersion": "1",
        "Signature": "c2ln",
        "SigningCertURL": CERT_URL,
    }
    data.pop(key, None)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"\xff\xfe", "not UTF-8 JSON", id="not-utf8"),
        pytest.param("{not json", "not UTF-8 JSON", id="not-json"),
        pytest.param("[]", "not a JSON object", id="array"),
        pytest.param(_without("Signature"), "missing Signature", id="no-signature"),
        pytest.param(_without("SigningCertURL"), "missing SigningCertURL", id="no-cert-url"),
        pytest.param(_without("Timestamp"), "missing Timestamp", id="no-timestamp"),
        pytest.param(
            _without("nothing").replace('"1"', "1"),
            "'SignatureVersion' is not a string",
            id="number-version",
        ),
        pytest.param(
            _without("nothing").replace("2026-11-29T10:00:00Z", "yesterday"),
            "not ISO 8601",
            id="bad-timestamp",
        ),
        pytest.param(
            _without("nothing").replace('"Notification"', '"Surprise"'),
            "unknown notification Type",
            id="unknown-type",
        ),
    ],
)
def test_a_malformed_body_is_refused(body: bytes | str, reason: str) -> None:
    with pytest.raises(NotificationError, match=reason):
        parse_notification(body)


def _body(**changes: Any) -> str:
    """A well-formed (unsigned) envelope with some keys changed."""
    data: dict[str, Any] = json.loads(_without("nothing"))
    data.update(changes)
    return json.dumps(data)


def _nested(levels: int) -> Any:
    """A value `levels` arrays deep."""
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


_SURROGATE = "\ud800"  # a lone surrogate: json.dumps writes it as the escape \ud800

HOSTILE_BODIES = [
    pytest.param(b"[" * 50_000, "nested deeper", id="deep-array"),
    pytest.param(b'{"a":' * 10_000, "nested deeper", id="deep-object"),
    pytest.param(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "nested", id="depth+1"),
    pytest.param(_body(Extra=_nested(MAX_JSON_DEPTH)), "nested deeper", id="deep-extra-key"),
    pytest.param(_body(Message="[" * 50_000), "Message is nested deeper", id="deep-message"),
    pytest.param(
        _body(Message=json.dumps({"ObjectId": _nested(MAX_JSON_DEPTH)})),
        "Message is nested deeper",
        id="deep-message-field",
    ),
    pytest.param(b"x" * (MAX_NOTIFICATION_BYTES + 1), "too large", id="oversized"),
    pytest.param(b"NaN", "NaN", id="nan"),
    pytest.param(_body(Subject=None).replace("null", "Infinity"), "Infinity", id="infinity"),
    pytest.param(b"[-Infinity]", "-Infinity", id="minus-infinity"),
    pytest.param(b"1" * 5000, "number longer", id="huge-int"),
    pytest.param(b"[1e999]", "too large", id="float-overflow"),
    pytest.param(b"[0." + b"1" * 400 + b"]", "too long", id="long-float"),
    pytest.param(_body(Message='{"ObjectId": NaN}'), "Message contains NaN", id="message-nan"),
    pytest.param(
        _body(Message='{"ObjectId": ' + "9" * 400 + "}"), "Message contains a number", id="msg-int"
    ),
    pytest.param(
        _without("nothing").replace(
            '"Type": "Notification"', '"Type": "x", "Type": "Notification"'
        ),
        "repeats a key",
        id="duplicate-key",
    ),
    pytest.param(
        _body(Message='{"ObjectId": "a", "ObjectId": "b"}'), "Message repeats", id="msg-dup-key"
    ),
    pytest.param(_body(Subject=_SURROGATE), "not text", id="surrogate-value"),
    pytest.param(_body(**{_SURROGATE: "x"}), "not text", id="surrogate-key"),
    pytest.param(
        _body(Message=json.dumps({"ObjectId": _SURROGATE})), "Message contains", id="msg-surrogate"
    ),
    pytest.param(_without("nothing").encode("utf-16"), "not UTF-8 JSON", id="utf-16"),
    pytest.param(b"\xef\xbb\xbf" + _without("nothing").encode(), "not UTF-8 JSON", id="utf-8-bom"),
    pytest.param(_without("nothing")[:-5], "not UTF-8 JSON", id="truncated"),
    pytest.param(_without("nothing") + " {}", "not UTF-8 JSON", id="trailing-data"),
    pytest.param(b"", "not UTF-8 JSON", id="empty"),
    pytest.param(b" \n\t", "not UTF-8 JSON", id="whitespace"),
    pytest.param(b"\x00", "not UTF-8 JSON", id="nul"),
    pytest.param(b"null", "not a JSON object", id="null"),
    pytest.param(b"true", "not a JSON object", id="true"),
    pytest.param(b"42", "not a JSON object", id="number"),
    pytest.param(b'"text"', "not a JSON object", id="string"),
]


@pytest.mark.parametrize(("body", "reason"), HOSTILE_BODIES)
def test_a_hostile_body_is_refused_within_bounds(body: bytes | str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(NotificationError, match=reason):
        parse_notification(body)
    assert time.perf_counter() - started < 1.0  # a linear scan, not an exploration


@pytest.mark.parametrize(
    "key",
    [
        "Type",
        "MessageId",
        "TopicArn",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
        "SigningCertUrl",
        "Subject",
        "SubscribeURL",
        "Token",
        "UnsubscribeURL",
    ],
)
def test_each_sns_key_must_be_a_string(key: str) -> None:
    for value in (1, 1.5, True, [], {}, ["Notification"], {"Type": "Notification"}):
        with pytest.raises(NotificationError, match=f"{key!r} is not a string"):
            parse_notification(_body(**{key: value}))


def test_unsigned_extra_keys_of_any_shape_are_left_out(signer: Signer) -> None:
    data: dict[str, Any] = envelope(signer)
    data["MessageAttributes"] = {"Kind": {"Type": "String", "Value": "ipn"}}  # SNS may add it
    data["Other"] = [1, 2.5, None]
    notification = parse_notification(json.dumps(data))
    assert "MessageAttributes" not in notification.envelope
    make_verifier(Certificates({CERT_URL: signer.pem})).verify(notification)


def test_message_fields_that_are_not_strings_read_as_absent(signer: Signer) -> None:
    inner = {**INNER, "ObjectId": 12345, "ChargePermissionId": ["S01-1"], "ObjectType": None}
    notification = parse_notification(json.dumps(envelope(signer, Message=json.dumps(inner))))
    assert notification.message is not None
    assert notification.message.object_id is None
    assert notification.message.charge_permission_id is None
    assert notification.message.object_type is None
    assert notification.message.merchant_id == MERCHANT


def test_nesting_up_to_the_bound_is_parsed(signer: Signer) -> None:
    inner = {**INNER, "Extra": _nested(MAX_JSON_DEPTH - 1)}  # inside the message object
    data: dict[str, Any] = envelope(signer, Message=json.dumps(inner))
    data["MessageAttributes"] = _nested(MAX_JSON_DEPTH - 1)  # inside the envelope object
    notification = parse_notification(json.dumps(data))
    assert notification.message is not None
    assert notification.message.object_id == INNER["ObjectId"]


def test_importing_notifications_does_not_load_flask_or_the_storefront() -> None:
    code = (
        "import amazonpay.notifications, sys; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('flask', 'storefront')]; "
        "assert not loaded, loaded"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


# -- the default fetcher ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        pytest.param(404, {}, "HTTP 404", id="not-found"),
        pytest.param(302, {"Location": "https://evil.example/c.pem"}, "HTTP 302", id="redirect"),
    ],
)
def test_the_default_fetcher_refuses_errors_and_redirects(
    status: int, headers: dict[str, str], reason: str
) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, CERT_URL, status=status, headers=headers)
        with pytest.raises(NotificationError, match=reason):
            fetch_certificate(CERT_URL)


def test_the_default_fetcher_refuses_an_oversized_body() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, CERT_URL, body=b"x" * 70_000)
        with pytest.raises(NotificationError, match="too large"):
            fetch_certificate(CERT_URL)


def test_the_default_fetcher_wraps_connection_errors() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, CERT_URL, body=requests.ConnectionError("refused"))
        with pytest.raises(NotificationError, match="could not fetch"):
            fetch_certificate(CERT_URL)


# -- subscription confirmations ---------------------------------------------------------------

TOKEN = "2336412f37fb687f5d51e6e2425ba1f30ab1bd8c5b7a6d9f0e7c4c1c0a9b8d7e"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token={TOKEN}"
)
DEV_CERT_URL = "http://127.0.0.1:8443/_simulator/sns-cert.pem"


def confirmation(signer: Signer, kind: str = "SubscriptionConfirmation", **fields: str) -> str:
    data = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": TOKEN,
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": _stamp(NOW - timedelta(seconds=30)),
        "SignatureVersion": "1",
        "SigningCertURL": CERT_URL,
    }
    data.update(fields)
    return json.dumps(signer.sign(data))


@pytest.mark.parametrize("missing", ["SubscribeURL", "Token"])
def test_a_subscription_confirmation_needs_its_url_and_token(signer: Signer, missing: str) -> None:
    data = json.loads(confirmation(signer))
    del data[missing]
    with pytest.raises(NotificationError, match=f"missing {missing}"):
        parse_notification(json.dumps(data))


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_a_genuine_confirmation_verifies(
    signer: Signer, certificates: Certificates, kind: str
) -> None:
    notification = parse_notification(confirmation(signer, kind))
    assert notification.type == kind
    assert notification.subscribe_url == SUBSCRIBE_URL
    assert notification.token == TOKEN
    assert notification.message is None
    make_verifier(certificates).verify(notification)


@pytest.mark.parametrize("key", ["SubscribeURL", "Token", "Message", "Type"])
def test_a_confirmation_changed_after_signing_does_not_verify(
    signer: Signer, certificates: Certificates, key: str
) -> None:
    data = json.loads(confirmation(signer))
    data[key] = {
        "SubscribeURL": SUBSCRIBE_URL.replace("Token=", "Token=0"),
        "Token": TOKEN[::-1],
        "Message": "something else",
        "Type": "UnsubscribeConfirmation",
    }[key]
    with pytest.raises(NotificationError, match="does not verify"):
        make_verifier(certificates).verify(parse_notification(json.dumps(data)))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(SUBSCRIBE_URL.replace("https://", "http://"), id="http"),
        pytest.param("https://evil.example/?Action=ConfirmSubscription", id="foreign-host"),
        pytest.param("https://sns.us-east-1.amazonaws.com.evil.example/", id="host-suffix"),
        pytest.param("https://sns.us-east-1.amazonaws.com@evil.example/", id="userinfo"),
        pytest.param("https://sns.us-east-1.amazonaws.com:8443/?Action=x", id="port"),
        pytest.param("https://sns.us-east-1.amazonaws.com/#frag", id="fragment"),
        pytest.param("https://sns.ab.amazonaws.com/?Action=x", id="short-region"),
        pytest.param("https://sqs.us-east-1.amazonaws.com/?Action=x", id="not-sns"),
        pytest.param("https://[::1/", id="unparsable"),
        pytest.param("http://127.0.0.1:8443/confirm", id="simulator-origin-not-trusted"),
        pytest.param("file:///etc/passwd", id="file"),
    ],
)
def test_a_foreign_subscribe_url_is_refused_before_anything_is_fetched(
    signer: Signer, certificates: Certificates, url: str
) -> None:
    notification = parse_notification(confirmation(signer, SubscribeURL=url))
    with pytest.raises(NotificationError, match="untrusted SubscribeURL") as caught:
        make_verifier(certificates).verify(notification)
    assert TOKEN not in str(caught.value)
    assert certificates.fetched == []


def test_subscribe_urls_on_sns_hosts_and_the_trusted_simulator_origin_pass(
    signer: Signer,
) -> None:
    verifier = make_verifier(Certificates({}), allow_cert_urls=[DEV_CERT_URL])
    for url in (
        SUBSCRIBE_URL,
        "https://sns.cn-north-1.amazonaws.com.cn/?Action=ConfirmSubscription&Token=t",
        "https://sns.eu-west-1.amazonaws.com:443/?Action=ConfirmSubscription",
        "http://127.0.0.1:8443/_simulator/confirm?Token=t",  # the simulator's origin
    ):
        verifier.check_subscribe_url(url)
    for url in ("http://127.0.0.1:8444/confirm", "https://127.0.0.1:8443/confirm"):
        with pytest.raises(NotificationError, match="untrusted SubscribeURL"):
            verifier.check_subscribe_url(url)


def test_an_unsubscribe_confirmation_is_not_held_to_the_subscribe_url_rule(
    signer: Signer, certificates: Certificates
) -> None:
    # Nothing is fetched for it, so its URL does not matter; the signature still does.
    notification = parse_notification(
        confirmation(signer, "UnsubscribeConfirmation", SubscribeURL="https://evil.example/")
    )
    make_verifier(certificates).verify(notification)


def test_confirm_subscription_gets_the_url_once_with_the_timeout() -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SUBSCRIBE_URL, body="<ConfirmSubscriptionResponse/>")
        confirm_subscription(SUBSCRIBE_URL, timeout=2.5)
        assert len(rsps.calls) == 1
        assert rsps.calls[0].request.url == SUBSCRIBE_URL
        assert rsps.calls[0].request.req_kwargs["timeout"] == 2.5


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param({"status": 404}, "HTTP 404", id="not-found"),
        pytest.param({"status": 500}, "HTTP 500", id="server-error"),
        pytest.param(
            {"status": 302, "headers": {"Location": "https://evil.example/"}},
            "HTTP 302",
            id="redirect",
        ),
        pytest.param({"body": requests.ConnectTimeout(SUBSCRIBE_URL)}, "ConnectTimeout", id="tmo"),
        pytest.param(
            {"body": requests.ConnectionError(SUBSCRIBE_URL)}, "ConnectionError", id="conn"
        ),
    ],
)
def test_a_failed_confirmation_is_an_error_that_does_not_repeat_the_token(
    answer: dict[str, Any], reason: str
) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, SUBSCRIBE_URL, **answer)
        with pytest.raises(NotificationError, match=reason) as caught:
            confirm_subscription(SUBSCRIBE_URL)
        assert len(rsps.calls) == 1  # the redirect is not followed
    assert TOKEN not in str(caught.value)
    assert "sns.us-east-1.amazonaws.com" in str(caught.value)


# -- against the simulator --------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[IpnReceiver]:
    """A tiny IPN endpoint on an ephemeral port that keeps the raw bodies it is sent."""
    with ipn_receiver() as ipn:
        yield ipn


def test_notifications_from_the_simulator_verify_with_its_served_certificate(
    private_pem: bytes,
    public_pem: bytes,
    receiver: IpnReceiver,
) -> None:
    key_id = "SANDBOX-NOTIFYTEST0000000000000"
    handle = serve_in_thread(Simulator(public_keys={key_id: public_pem}, notify_url=receiver.url))
    client = AmazonPayClient(
        public_key_id=key_id,
        private_key=private_pem,
        endpoint=handle.base_url,
        retry=RetryPolicy(max_attempts=1),
        read_timeout=5,
    )
    try:
        session = client.create_checkout_session(
            {
                "storeId": SIMULATOR_STORE_ID,
                "webCheckoutDetails": {
                    "checkoutResultReturnUrl": "https://shop.example/checkout/return",
                    "checkoutMode": "ProcessOrder",
                },
                "paymentDetails": {
                    "paymentIntent": "Authorize",
                    "chargeAmount": {"amount": "14.00", "currencyCode": "USD"},
                },
                "merchantMetadata": {"merchantReferenceId": "order-ipn"},
            },
            idempotency_key="ipn-create-1",
        )
        sid = session.checkout_session_id
        played = requests.post(
            f"{handle.base_url}/_simulator/sessions/{sid}/outcome",
            json={"outcome": "success"},
            timeout=5,
        )
        assert played.status_code == 200, played.text
        done = client.complete_checkout_session(sid, Price.of("14.00", "USD")).checkout_session

        received = receiver.collect(2, timeout=10)
        assert len(received) == 2
        cert_url = handle.base_url + "/_simulator/sns-cert.pem"
        verifier = NotificationVerifier(fetch_certificate, allow_cert_urls={cert_url})
        strict = NotificationVerifier(fetch_certificate)
        notifications = []
        for headers, body in received:
            assert headers["content-type"].startswith("text/plain")
            assert headers["x-amz-sns-message-type"] == "Notification"
            notification = parse_notification(body)
            assert notification.signing_cert_url == cert_url
            verifier.verify(notification)
            with pytest.raises(NotificationError, match="SigningCertURL"):
                strict.verify(notification)  # not an sns.*.amazonaws.com URL
            notifications.append(notification)

        messages = [n.message for n in notifications]
        assert all(m is not None for m in messages)
        assert {(m.object_type, m.object_id) for m in messages if m is not None} == {
            ("CHARGE_PERMISSION", done.charge_permission_id),
            ("CHARGE", done.charge_id),
        }
        for message in messages:
            assert message is not None
            assert message.merchant_id == SIMULATOR_MERCHANT_ID
            assert message.charge_permission_id == done.charge_permission_id
            assert message.notification_type == "STATE_CHANGE"
            assert message.notification_version == "V2"

        forged = json.loads(received[0][1])
        forged["Message"] = forged["Message"].replace("STATE_CHANGE", "ATTRIBUTE_CHANGE")
        with pytest.raises(NotificationError, match="does not verify"):
            verifier.verify(parse_notification(json.dumps(forged)))
    finally:
        client.close()
        handle.shutdown()
