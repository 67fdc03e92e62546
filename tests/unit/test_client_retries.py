"""Retries, backoff and connection failures: what is re-sent, how long we wait, what we report."""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import pytest
import requests
import urllib3.exceptions
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay import errors, signing
from amazonpay.client import (
    RETRYABLE_STATUSES,
    AmazonPayClient,
    RetryPolicy,
    backoff_delay,
    parse_retry_after,
    should_retry,
)
from amazonpay.models import Channel, Charge, ChargeInitiator, ChargeState, Price

if TYPE_CHECKING:
    from conftest import FakeAmazon, FakeClock

API = "https://pay-api.amazon.com/sandbox/v2"
BASE_NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)  # FakeClock's time zero
SESSION_ID = "4d1a5e0a-1b2c-4d3e-8f90-123456789abc"
COMPLETE = f"{API}/checkoutSessions/{SESSION_ID}/complete"
GET = f"{API}/checkoutSessions/{SESSION_ID}"
USD = Price.of("12.50", "USD")
OK = (200, {"checkoutSessionId": SESSION_ID, "statusDetails": {"state": "Completed"}}, {})
UNAVAILABLE = (503, {"reasonCode": "ServiceUnavailable", "message": "try later"}, {})


def _refused() -> requests.ConnectionError:
    """What requests raises for a refused connection: NewConnectionError in MaxRetryError."""
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def _reset() -> requests.ConnectionError:
    """What requests raises when the peer resets after the request was sent."""
    return requests.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
        )
    )


def test_503_503_200_succeeds_on_the_third_attempt_with_jittered_waits(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route("POST", COMPLETE, UNAVAILABLE, UNAVAILABLE, OK)
    result = make_client().complete_checkout_session(SESSION_ID, USD)
    assert result.checkout_session.state == "Completed"
    assert len(fake_amazon.received) == 3
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.25
    assert 0 <= clock.sleeps[1] <= 0.5
    keys = {r.headers["x-amz-pay-idempotency-key"] for r in fake_amazon.received}
    assert len(keys) == 1  # the same key on every attempt (section 7)
    bodies = {r.body for r in fake_amazon.received}
    assert len(bodies) == 1


def test_each_attempt_is_re_signed_with_a_fresh_date(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    def slow_server(_: Any) -> None:
        clock.t += 2.0  # each answer takes two seconds of (fake) time

    fake_amazon.on_request = slow_server
    fake_amazon.route("POST", COMPLETE, UNAVAILABLE, OK)
    make_client().complete_checkout_session(SESSION_ID, USD)
    first, second = fake_amazon.received
    assert first.headers["x-amz-pay-date"] == "20261129T100000Z"
    assert signing.parse_amz_date(second.headers["x-amz-pay-date"]) >= BASE_NOW + timedelta(
        seconds=2
    )
    assert first.authorization.signature != second.authorization.signature
    assert first.headers["x-amz-pay-idempotency-key"] == second.headers["x-amz-pay-idempotency-key"]


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUSES))
def test_every_retryable_status_is_retried_up_to_max_attempts(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    clock: FakeClock,
    status: int,
) -> None:
    fake_amazon.route("GET", GET, (status, {"reasonCode": "X"}, {"x-amz-pay-request-id": "r"}))
    with pytest.raises(errors.APIError) as info:
        make_client().get_checkout_session(SESSION_ID)
    assert info.value.status == status
    assert len(fake_amazon.received) == 4
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_other_statuses_are_not_retried(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    clock: FakeClock,
    status: int,
) -> None:
    fake_amazon.route("POST", COMPLETE, (status, {"reasonCode": "Nope"}, {}), OK)
    with pytest.raises(errors.APIError):
        make_client().complete_checkout_session(SESSION_ID, USD)
    assert len(fake_amazon.received) == 1
    assert clock.sleeps == []


def test_429_with_retry_after_seconds_sleeps_that_long(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route(
        "GET", GET, (429, {"reasonCode": "TooManyRequests"}, {"Retry-After": "3"}), OK
    )
    make_client().get_checkout_session(SESSION_ID)
    assert clock.sleeps == [3.0]


def test_retry_after_http_date_is_honoured(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    when = format_datetime(BASE_NOW + timedelta(seconds=2), usegmt=True)
    fake_amazon.route("GET", GET, (503, {}, {"Retry-After": when}), OK)
    make_client().get_checkout_session(SESSION_ID)
    assert clock.sleeps == [2.0]


def test_retry_after_beyond_the_time_budget_gives_up_at_once(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route("GET", GET, (429, {"reasonCode": "TooManyRequests"}, {"Retry-After": "60"}))
    with pytest.raises(errors.RateLimitError):
        make_client().get_checkout_session(SESSION_ID)
    assert len(fake_amazon.received) == 1
    assert clock.sleeps == []


def test_total_time_cap_stops_retrying(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    def slow_server(_: Any) -> None:
        clock.t += 6.0

    fake_amazon.on_request = slow_server
    fake_amazon.route("GET", GET, UNAVAILABLE)
    with pytest.raises(errors.ServiceError):
        make_client(retry=RetryPolicy(max_attempts=10, max_total=15.0)).get_checkout_session(
            SESSION_ID
        )
    # 6 s + wait, 12 s + wait, then 18 s > 15 s: no third wait.
    assert len(fake_amazon.received) == 3
    assert len(clock.sleeps) == 2
    assert clock.t <= 15.0 + 6.0


def test_max_attempts_one_never_retries(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route("GET", GET, UNAVAILABLE, OK)
    with pytest.raises(errors.ServiceError):
        make_client(retry=RetryPolicy(max_attempts=1)).get_checkout_session(SESSION_ID)
    assert len(fake_amazon.received) == 1


def test_connection_reset_is_retried_with_the_same_idempotency_key(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route("POST", COMPLETE, _reset(), OK)
    result = make_client().complete_checkout_session(SESSION_ID, USD, idempotency_key="k-1")
    assert result.checkout_session.state == "Completed"
    keys = [r.headers["x-amz-pay-idempotency-key"] for r in fake_amazon.received]
    assert keys == ["k-1", "k-1"]
    assert len(clock.sleeps) == 1


def test_read_timeout_every_time_may_have_been_applied(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route("POST", COMPLETE, requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(errors.APIConnectionError) as info:
        make_client().complete_checkout_session(SESSION_ID, USD)
    assert info.value.may_have_been_applied is True
    assert len(fake_amazon.received) == 4
    assert len({r.headers["x-amz-pay-idempotency-key"] for r in fake_amazon.received}) == 1
    assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)


@pytest.mark.parametrize(
    ("failure", "applied"),
    [
        (_refused, False),
        (lambda: requests.exceptions.ConnectTimeout("connect timed out"), False),
        (_reset, True),
        (lambda: requests.exceptions.ReadTimeout("read"), True),
        (lambda: requests.exceptions.ChunkedEncodingError("broken chunk"), True),
        (lambda: requests.ConnectionError("something else"), True),
    ],
)
def test_connection_failure_classification(
    fake_amazon: FakeAmazon,
    make_client: Callable[..., AmazonPayClient],
    failure: Callable[[], Exception],
    applied: bool,
) -> None:
    fake_amazon.route("GET", GET, failure())
    with pytest.raises(errors.APIConnectionError) as info:
        make_client().get_checkout_session(SESSION_ID)
    assert info.value.may_have_been_applied is applied
    assert len(fake_amazon.received) == 4


def test_may_have_been_applied_sticks_once_any_attempt_may_have_landed(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route("POST", COMPLETE, _reset(), _refused())
    with pytest.raises(errors.APIConnectionError) as info:
        make_client().complete_checkout_session(SESSION_ID, USD)
    assert info.value.may_have_been_applied is True


def test_connection_failure_then_error_status_raises_the_status_error(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient]
) -> None:
    fake_amazon.route(
        "POST", COMPLETE, _reset(), (422, {"reasonCode": "InvalidCheckoutSessionStatus"}, {})
    )
    with pytest.raises(errors.ConflictError):
        make_client().complete_checkout_session(SESSION_ID, USD)


CHARGES = f"{API}/charges"
CHARGED = (201, {"chargeId": "C1", "statusDetails": {"state": "Captured"}}, {})


def _charge(client: AmazonPayClient) -> Charge:
    return client.create_charge(
        "S01-1111111-2222222",
        USD,
        capture_now=True,
        can_handle_pending_authorization=True,
        charge_initiator=ChargeInitiator.CITU,
        channel=Channel.WEB,
        merchant_reference_id="order-42",
        idempotency_key="order-42",
    )


def test_create_charge_replays_the_same_key_and_body_after_a_reset_and_a_503(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route("POST", CHARGES, _reset(), UNAVAILABLE, CHARGED)
    assert _charge(make_client()).state is ChargeState.CAPTURED
    assert [r.headers["x-amz-pay-idempotency-key"] for r in fake_amazon.received] == [
        "order-42"
    ] * 3
    assert len({r.body for r in fake_amazon.received}) == 1
    assert len(clock.sleeps) == 2


def test_a_decline_is_not_retried(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    fake_amazon.route("POST", CHARGES, (400, {"reasonCode": "SoftDeclined"}, {}), CHARGED)
    with pytest.raises(errors.DeclinedError) as info:
        _charge(make_client())
    assert info.value.retry_may_help  # ...but with a new key, which only the caller can choose
    assert len(fake_amazon.received) == 1
    assert clock.sleeps == []


def test_a_processing_failure_sent_as_500_is_replayed_then_reported_as_a_decline(
    fake_amazon: FakeAmazon, make_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    # A 500 is retried like any 5xx; the same key makes the replay safe (section 7).
    fake_amazon.route("POST", CHARGES, (500, {"reasonCode": "ProcessingFailure"}, {}))
    with pytest.raises(errors.DeclinedError) as info:
        _charge(make_client())
    assert info.value.decline_code is errors.DeclineCode.PROCESSING_FAILURE
    assert len(fake_amazon.received) == 4
    assert {r.headers["x-amz-pay-idempotency-key"] for r in fake_amazon.received} == {"order-42"}


# -- real sockets: what the OS and requests actually raise ------------------------------------


@pytest.fixture
def real_client(private_key: rsa.RSAPrivateKey, clock: FakeClock) -> Callable[..., AmazonPayClient]:
    def make(port: int, **overrides: Any) -> AmazonPayClient:
        options: dict[str, Any] = {
            "public_key_id": "AKEYID123",
            "private_key": private_key,
            "endpoint": f"http://127.0.0.1:{port}",
            "sleep": clock.sleep,
            "monotonic": clock.monotonic,
            "now": clock.now,
            "read_timeout": 0.3,
            "connect_timeout": 1.0,
        }
        options.update(overrides)
        return AmazonPayClient(**options)

    return make


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RawServer:
    """Accepts connections and reads one request each, then resets or stalls."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(2)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.requests.append(data)
            if self.mode == "reset":
                # SO_LINGER 0 turns close() into a TCP RST: a reset after the request was sent.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self.held.append(conn)  # never answer: the client's read timeout fires

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(2)
        for conn in self.held:
            conn.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[str], RawServer]]:
    servers: list[RawServer] = []

    def start(mode: str) -> RawServer:
        servers.append(RawServer(mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _idempotency_keys(raw_requests: list[bytes]) -> list[str]:
    keys = []
    for raw in raw_requests:
        for line in raw.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "x-amz-pay-idempotency-key":
                keys.append(value.strip())
    return keys


def test_real_refused_connection_never_left(
    real_client: Callable[..., AmazonPayClient], clock: FakeClock
) -> None:
    client = real_client(_free_port())
    with pytest.raises(errors.APIConnectionError) as info:
        client.complete_checkout_session(SESSION_ID, USD)
    assert info.value.may_have_been_applied is False
    assert len(clock.sleeps) == 3  # retried: nothing can have been applied


def test_real_reset_after_sending_may_have_been_applied(
    real_client: Callable[..., AmazonPayClient], raw_server: Callable[[str], RawServer]
) -> None:
    server = raw_server("reset")
    with pytest.raises(errors.APIConnectionError) as info:
        real_client(server.port).complete_checkout_session(SESSION_ID, USD)
    assert info.value.may_have_been_applied is True
    keys = _idempotency_keys(server.requests)
    assert len(keys) == 4
    assert len(set(keys)) == 1


def test_real_read_timeout_may_have_been_applied(
    real_client: Callable[..., AmazonPayClient], raw_server: Callable[[str], RawServer]
) -> None:
    server = raw_server("stall")
    client = real_client(server.port, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(errors.APIConnectionError) as info:
        client.complete_checkout_session(SESSION_ID, USD, idempotency_key="stable")
    assert info.value.may_have_been_applied is True
    assert _idempotency_keys(server.requests) == ["stable", "stable"]


# -- the pure functions ------------------------------------------------------------------------

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("method", "status", "has_key", "attempt", "expected"),
    [
        ("GET", 503, False, 1, True),
        ("GET", None, False, 1, True),
        ("GET", 503, False, 4, False),
        ("GET", 503, False, 3, True),
        ("GET", 400, False, 1, False),
        ("GET", 501, False, 1, False),
        ("GET", 200, False, 1, False),
        ("PATCH", 429, False, 1, True),
        ("DELETE", None, False, 2, True),
        ("POST", 503, True, 1, True),
        ("post", None, True, 1, True),
        ("POST", 503, False, 1, False),
        ("POST", None, False, 1, False),
        ("POST", 408, True, 1, True),
        ("POST", 425, True, 1, True),
        ("POST", 409, True, 1, False),
    ],
)
def test_should_retry(
    method: str, status: int | None, has_key: bool, attempt: int, expected: bool
) -> None:
    assert (
        should_retry(method, status, has_idempotency_key=has_key, attempt=attempt, policy=POLICY)
        is expected
    )


def test_retryable_statuses_match_the_sdks() -> None:
    assert frozenset({408, 425, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


class UpperBound:
    """An rng that always picks the top of the range, to see the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (6, 4.0), (30, 4.0)]
)
def test_backoff_ceiling_doubles_up_to_max_delay(attempt: int, ceiling: float) -> None:
    assert backoff_delay(attempt, POLICY, None, UpperBound()) == ceiling


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 8])
def test_backoff_is_full_jitter_within_bounds(attempt: int) -> None:
    rng = random.Random(1234)
    ceiling = min(POLICY.max_delay, POLICY.base_delay * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, POLICY, None, rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Full jitter spreads over the whole range, not just near the ceiling.
    assert min(delays) < ceiling * 0.1
    assert max(delays) > ceiling * 0.9


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(0.0, 0.0), (2.5, 2.5), (-3.0, 0.0), (100.0, 100.0)]
)
def test_backoff_honours_retry_after(retry_after: float, expected: float) -> None:
    assert backoff_delay(1, POLICY, retry_after, UpperBound()) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("-2", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        (format_datetime(BASE_NOW + timedelta(seconds=7), usegmt=True), 7.0),
        (format_datetime(BASE_NOW - timedelta(seconds=7), usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, BASE_NOW) == expected


@pytest.mark.parametrize(
    "options",
    [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_delay": -1.0}, {"max_total": -0.1}],
)
def test_retry_policy_validates(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        RetryPolicy(**options)


def test_retry_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        POLICY.max_attempts = 9  # type: ignore[misc]
