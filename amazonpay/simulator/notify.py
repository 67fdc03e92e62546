"""Amazon-style Instant Payment Notifications: SNS envelopes signed with a test certificate.

Section 10 of docs/amazon-pay-api.md: the body is an SNS `Notification` whose `Message` is a JSON
string; `SignatureVersion` "1" means RSA PKCS#1 v1.5 with SHA1 over the SNS string to sign. The
simulator makes its own self-signed certificate and serves it at `/_simulator/sns-cert.pem`.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from amazonpay.simulator.state import Event

log = logging.getLogger(__name__)

TOPIC_ARN = "arn:aws:sns:us-east-1:000000000000:amazon-pay-simulator"
_SIGNED_KEYS = (
    "Message",
    "MessageId",
    "Subject",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


def sns_string_to_sign(envelope: dict[str, str]) -> str:
    """`key\\nvalue\\n` for each present key in SNS's fixed order (section 10)."""
    return "".join(f"{k}\n{envelope[k]}\n" for k in _SIGNED_KEYS if k in envelope)


class SigningCertificate:
    """A self-signed RSA certificate used to sign notifications (made on first use)."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.simulator.invalid")])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, text: str) -> str:
        raw = self._key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
        return base64.b64encode(raw).decode("ascii")


def build_envelope(
    event: Event, *, merchant_id: str, cert: SigningCertificate, cert_url: str, now: datetime
) -> dict[str, str]:
    message = {
        "MerchantID": merchant_id,
        "ObjectType": event.object_type,
        "ObjectId": event.object_id,
        "ChargePermissionId": event.charge_permission_id,
        "NotificationType": event.notification_type,
        "NotificationId": uuid.uuid4().hex,
        "NotificationVersion": "V2",
    }
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps(message),
        "Timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{now.microsecond // 1000:03d}Z",
        "SignatureVersion": "1",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": cert_url.rsplit("/", 1)[0] + "/unsubscribe",
    }
    envelope["Signature"] = cert.sign(sns_string_to_sign(envelope))
    return envelope


class Notifier:
    """Posts envelopes to `notify_url` from one daemon thread with a short timeout."""

    def __init__(self, notify_url: str, timeout: float = 2.0) -> None:
        self.notify_url = notify_url
        self.timeout = timeout
        self._queue: queue.Queue[dict[str, str]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="simulator-ipn", daemon=True)
        self._thread.start()

    def send(self, envelope: dict[str, str]) -> None:
        self._queue.put(envelope)

    def _run(self) -> None:
        while True:
            envelope = self._queue.get()
            request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own setting
                self.notify_url,
                data=json.dumps(envelope).encode("utf-8"),
                method="POST",
                headers={
                    "content-type": "text/plain; charset=UTF-8",
                    "x-amz-sns-message-type": envelope["Type"],
                    "x-amz-sns-message-id": envelope["MessageId"],
                    "x-amz-sns-topic-arn": envelope["TopicArn"],
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    response.read()
            except Exception as exc:  # a dead receiver must not kill the thread
                log.warning("IPN to %s failed: %s", self.notify_url, exc)
