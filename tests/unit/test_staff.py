"""Staff sign-in on SQLite and PostgreSQL: only the exact password passes, wrong guesses are
slowed per address and for everyone, across two app instances (two Stores on one database),
windows and blocks run out, and every attempt leaves an audit row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from storefront.db import Store, create_store_engine
from storefront.db.audit import StaffAudit
from storefront.db.schema import staff_audit
from storefront.db.throttles import Limit, Throttles
from storefront.staff import ADDRESS_LIMIT, GLOBAL_LIMIT, SignIn, StaffSignIn, _digest

PASSWORD = "tr0ub4dor & 3 — ünïcode"
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Instances:
    """Two app instances' sign-in use cases sharing one database and one clock."""

    first: StaffSignIn
    second: StaffSignIn
    clock: Clock
    store: Store


def sign_in_on(store: Store, clock: Clock, **limits: Limit) -> StaffSignIn:
    return StaffSignIn(
        PASSWORD, Throttles(store.engine), StaffAudit(store.engine), clock=clock, **limits
    )


@pytest.fixture
def instances(store: Store) -> Iterator[Instances]:
    # A second Store with its own engine and pool: another process as far as the database knows.
    other = Store(create_store_engine(store.engine.url.render_as_string(hide_password=False)))
    clock = Clock()
    yield Instances(sign_in_on(store, clock), sign_in_on(other, clock), clock, store)
    other.engine.dispose()


def audit_rows(store: Store) -> list[tuple[str, str, str | None, str | None, str]]:
    a = staff_audit.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(a.actor, a.action, a.order_reference, a.request_id, a.outcome).order_by(a.id)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_only_the_exact_password_signs_in(instances: Instances) -> None:
    check = instances.first
    for wrong in (
        PASSWORD[:-1],  # a prefix
        PASSWORD + " ",  # longer
        PASSWORD.upper(),
        "x" + PASSWORD[1:],  # differs in the first character only
        "",
        "\ud800",  # a lone surrogate (a form can carry one): compared, never an error
        "a" * 10_000,
    ):
        assert check.sign_in(wrong, f"10.0.0.{len(wrong) % 250}").kind is SignIn.WRONG, wrong
    assert check.sign_in(PASSWORD, "10.0.1.1").kind is SignIn.OK


def test_sign_in_compares_fixed_length_digests_so_length_and_prefix_are_not_timed() -> None:
    # compare_digest takes time independent of where the inputs differ only for equal lengths:
    # the use case compares SHA-256 digests, whose length never depends on the guess.
    assert {len(_digest(guess)) for guess in ("", "a", PASSWORD, "z" * 5000)} == {32}
    assert _digest(PASSWORD) != _digest(PASSWORD[:-1])


def test_wrong_guesses_lock_the_address_on_every_instance_and_then_grow(
    instances: Instances,
) -> None:
    first, second, clock = instances.first, instances.second, instances.clock
    address = "203.0.113.7"
    for n in range(ADDRESS_LIMIT.limit):
        instance = first if n % 2 else second  # spread over both instances
        assert instance.sign_in("guess", address).kind is SignIn.WRONG
    # Free guesses used up: the next wrong one (on either instance) blocks the address.
    assert first.sign_in("guess", address).kind is SignIn.WRONG
    locked = second.sign_in(PASSWORD, address)  # even the right password is not checked
    assert locked.kind is SignIn.LOCKED
    assert 29 <= locked.retry_after <= 31
    assert first.sign_in(PASSWORD, "198.51.100.1").kind is SignIn.OK  # others are unaffected

    clock.advance(seconds=31)  # the block ran out; the count in the window did not
    assert second.sign_in("guess", address).kind is SignIn.WRONG
    longer = first.sign_in(PASSWORD, address)
    assert longer.kind is SignIn.LOCKED
    assert 59 <= longer.retry_after <= 61  # doubled

    clock.advance(seconds=61)
    assert first.sign_in(PASSWORD, address).kind is SignIn.OK
    # The right password forgot the address's wrong guesses: five free ones again.
    for _ in range(ADDRESS_LIMIT.limit):
        assert second.sign_in("guess", address).kind is SignIn.WRONG
    assert first.sign_in(PASSWORD, address).kind is SignIn.OK


def test_a_window_that_ran_out_starts_counting_again(instances: Instances) -> None:
    first, second, clock = instances.first, instances.second, instances.clock
    address = "203.0.113.8"
    for _ in range(ADDRESS_LIMIT.limit):
        assert first.sign_in("guess", address).kind is SignIn.WRONG
    clock.advance(seconds=ADDRESS_LIMIT.window.total_seconds() + 1)
    for _ in range(ADDRESS_LIMIT.limit):
        assert second.sign_in("guess", address).kind is SignIn.WRONG
    assert first.sign_in(PASSWORD, address).kind is SignIn.OK


def test_blocks_never_grow_past_their_cap(store: Store) -> None:
    clock = Clock()
    tight = Limit(
        window=timedelta(hours=1),
        limit=1,
        block=timedelta(seconds=10),
        max_block=timedelta(seconds=40),
    )
    check = sign_in_on(store, clock, address_limit=tight, global_limit=GLOBAL_LIMIT)
    assert check.sign_in("guess", "203.0.113.9").kind is SignIn.WRONG  # the one free guess
    waits = []
    for _ in range(6):
        assert check.sign_in("guess", "203.0.113.9").kind is SignIn.WRONG
        locked = check.sign_in("guess", "203.0.113.9")
        assert locked.kind is SignIn.LOCKED
        waits.append(locked.retry_after)
        clock.advance(seconds=locked.retry_after)
    assert waits == [11, 21, 41, 41, 41, 41]


def test_guesses_spread_over_many_addresses_lock_everyone(instances: Instances) -> None:
    first, second, clock = instances.first, instances.second, instances.clock
    for n in range(GLOBAL_LIMIT.limit + 1):
        instance = first if n % 2 else second
        assert instance.sign_in("guess", f"192.0.2.{n}").kind is SignIn.WRONG
    locked = first.sign_in(PASSWORD, "198.51.100.200")  # a fresh address, the right password
    assert locked.kind is SignIn.LOCKED
    assert 9 <= locked.retry_after <= 11
    clock.advance(seconds=11)
    assert second.sign_in(PASSWORD, "198.51.100.200").kind is SignIn.OK


def test_every_attempt_leaves_an_audit_row(instances: Instances) -> None:
    first, second = instances.first, instances.second
    address = "203.0.113.10"
    assert first.sign_in(PASSWORD, address).kind is SignIn.OK
    for _ in range(ADDRESS_LIMIT.limit + 1):
        second.sign_in("guess", address)
    assert first.sign_in(PASSWORD, address).kind is SignIn.LOCKED
    outcomes = [row[4] for row in audit_rows(instances.store)]
    assert outcomes == ["signed-in", *["wrong-password"] * 6, "locked"]
    assert {row[:4] for row in audit_rows(instances.store)} == {("staff", "sign_in", None, None)}
    # What was typed is never recorded.
    assert not any(
        "guess" in str(row) or PASSWORD in str(row) for row in audit_rows(instances.store)
    )
