"""No request thread sits on someone else's claim, and no slow winner is overtaken: a short lease
kept alive by its holder, let go when the holder fails, waited on only while it is young."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay.client import AmazonPayClient
from storefront.checkout import OutcomeKind, ReturnHandler
from storefront.db import PendingCheckout, Store, create_store_engine
from storefront.db.leases import LeaseKeeper
from storefront.states import CheckoutKind

SESSION_ID = "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
WAIT = timedelta(seconds=2)


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(create_store_engine(f"sqlite:///{tmp_path / 'shop.db'}"))
    store.upgrade()
    yield store
    store.engine.dispose()


@pytest.fixture
def pending(store: Store) -> PendingCheckout:
    return store.checkouts.find_or_create(
        buyer_id="b" * 22,
        kind=CheckoutKind.WALLET_SETUP,
        amount=None,
        currency="USD",
        items=[],
        now=now(),
        reuse_window=timedelta(hours=1),
    )


@pytest.fixture
def handler(store: Store) -> Iterator[ReturnHandler]:
    client = AmazonPayClient(
        public_key_id="SANDBOX-OUTAGETEST",
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        endpoint="http://127.0.0.1:9",  # never called: every case here is decided by the claim
    )
    yield ReturnHandler(client, store, clock=now, sleep=time.sleep, wait=WAIT)
    client.close()


def test_a_holder_keeps_its_short_lease_alive_while_it_works(
    store: Store, pending: PendingCheckout
) -> None:
    lease = timedelta(seconds=1)
    keeper = LeaseKeeper(store.ledger, lease=lease, clock=now, every_seconds=0.1)
    assert store.ledger.claim(
        SESSION_ID, pending.reference, owner="slow", now=now(), lease=lease
    ).won

    with keeper.holding(SESSION_ID, "slow"):
        time.sleep(1.5)  # longer than the lease: only the heartbeat keeps it
        rival = store.ledger.claim(
            SESSION_ID, pending.reference, owner="rival", now=now(), lease=lease
        )
        assert not rival.won
    time.sleep(1.2)  # no heartbeat any more: the lease runs out as it would after a crash
    takeover = store.ledger.claim(
        SESSION_ID, pending.reference, owner="next", now=now(), lease=lease
    )

    assert (takeover.won, takeover.taken_over) == (True, True)


def test_a_holder_that_fails_lets_its_lease_go_at_once(
    store: Store, pending: PendingCheckout
) -> None:
    lease = timedelta(seconds=20)
    keeper = LeaseKeeper(store.ledger, lease=lease, clock=now)
    assert store.ledger.claim(SESSION_ID, pending.reference, owner="a", now=now(), lease=lease).won

    with pytest.raises(ConnectionError), keeper.holding(SESSION_ID, "a"):
        raise ConnectionError("the database went away mid-request")

    claim = store.ledger.get(SESSION_ID)
    assert claim is not None
    assert claim.lease_owner is None
    assert not claim.lease_live(now())
    assert store.ledger.claim(SESSION_ID, pending.reference, owner="b", now=now(), lease=lease).won


def timed_return(
    handler: ReturnHandler, pending: PendingCheckout
) -> tuple[OutcomeKind, str, float]:
    started = time.monotonic()
    outcome = handler.handle_return([SESSION_ID], [pending.reference])
    return outcome.kind, outcome.reason, time.monotonic() - started


def test_an_old_claim_held_elsewhere_is_answered_being_confirmed_at_once(
    handler: ReturnHandler, store: Store, pending: PendingCheckout
) -> None:
    # Claimed 10 s ago by a worker that crashed (or is slow): its lease is still live.
    store.ledger.claim(
        SESSION_ID,
        pending.reference,
        owner="crashed",
        now=now() - timedelta(seconds=10),
        lease=timedelta(seconds=20),
    )

    kind, reason, seconds = timed_return(handler, pending)

    assert (kind, reason) == (OutcomeKind.PENDING, "claimed-elsewhere")
    assert seconds < 0.5, seconds


def test_a_young_claim_is_waited_on_for_its_decision_then_no_longer(
    handler: ReturnHandler, store: Store, pending: PendingCheckout
) -> None:
    store.ledger.claim(
        SESSION_ID, pending.reference, owner="winner", now=now(), lease=timedelta(seconds=20)
    )

    kind, reason, seconds = timed_return(handler, pending)  # the winner never decides

    assert (kind, reason) == (OutcomeKind.PENDING, "claimed-elsewhere")
    assert WAIT.total_seconds() - 0.3 < seconds < WAIT.total_seconds() + 0.5, seconds


def test_a_waiter_shows_the_winners_decision_as_soon_as_it_is_written(
    handler: ReturnHandler, store: Store, pending: PendingCheckout
) -> None:
    store.ledger.claim(
        SESSION_ID,
        pending.reference,
        owner="winner",
        now=now(),
        lease=timedelta(seconds=20),
        start_processing=True,
    )

    def winner_decides() -> None:
        time.sleep(0.5)
        store.ledger.record_success(
            pending,
            SESSION_ID,
            charge_permission_id="B01-0000000-0000000",
            charge_id=None,
            now=now(),
        )

    deciding = threading.Thread(target=winner_decides)
    deciding.start()
    kind, _reason, seconds = timed_return(handler, pending)
    deciding.join()

    assert kind is OutcomeKind.SUCCESS
    assert seconds < WAIT.total_seconds(), seconds
