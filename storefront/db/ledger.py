"""The claim ledger: one row per Amazon operation, so it runs once however often it is asked.

Today the operation is Complete Checkout Session, keyed by checkout session id.
`INSERT ... ON CONFLICT DO NOTHING` picks one winner across threads, processes and instances; a
short lease, renewed by its holder while it works (`renew`), lets a later request take over when
the winner died mid-flight; the outcome (completed, failed, or pending = not known yet) is
written in the same transaction as its effect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection, RowMapping

from amazonpay.models import ChargeState
from storefront.db.checkouts import PendingCheckout, PendingCheckouts
from storefront.db.engine import Repository
from storefront.db.orders import Orders
from storefront.db.schema import operations
from storefront.db.wallets import SavedWallets
from storefront.states import CheckoutKind, ClaimState, OperationKind, OrderState

__all__ = ["Claim", "ClaimAttempt", "ClaimLedger"]

_UNDECIDED = (ClaimState.CLAIMED, ClaimState.PENDING)
_DECIDED = (ClaimState.COMPLETED, ClaimState.FAILED)


@dataclass(frozen=True)
class Claim:
    """One operation in the ledger: our key for it, its state, and what Amazon told us."""

    operation_key: str
    kind: OperationKind
    reference: str
    status: ClaimState
    lease_owner: str | None
    lease_expires_at: datetime | None
    attempts: int
    reason: str | None
    idempotency_key: str | None
    request: str | None
    charge_permission_id: str | None
    charge_id: str | None
    result_id: str | None
    next_attempt_at: datetime | None
    owner_confirmed: bool
    created_at: datetime
    updated_at: datetime

    @property
    def checkout_session_id(self) -> str:
        """A Complete Checkout Session operation is keyed by its checkout session id."""
        return self.operation_key

    @property
    def decided(self) -> bool:
        return self.status.decided

    def lease_live(self, now: datetime) -> bool:
        return self.lease_expires_at is not None and self.lease_expires_at > now


@dataclass(frozen=True)
class ClaimAttempt:
    """`won`: this caller holds the lease. `claim` is the row as it is after the attempt.

    `processing` answers `claim(..., start_processing=True)` for a newly inserted claim: True when
    the pending checkout was bound to the session in the same transaction, False when another
    session holds it (the claim was then rolled back: `won` is True but no row was kept). None
    when not asked, or when the claim was won by taking over a lease (bind it separately).
    """

    won: bool
    claim: Claim
    taken_over: bool = False
    processing: bool | None = None


def _claim(row: RowMapping) -> Claim:
    return Claim(**{c.name: row[c.name] for c in operations.columns})


class ClaimLedger(Repository):
    """Claims on Complete Checkout Session, and the recording of their outcomes."""

    def __init__(
        self,
        engine: Any,
        *,
        checkouts: PendingCheckouts,
        orders: Orders,
        wallets: SavedWallets,
    ) -> None:
        super().__init__(engine)
        self._checkouts = checkouts
        self._orders = orders
        self._wallets = wallets
        cc = operations.c
        self._select_claim = select(operations).where(cc.operation_key == bindparam("p_sid"))
        # RETURNING the whole row: the winner needs no second read.
        self._insert_claim = (
            self._insert(operations)
            .on_conflict_do_nothing(index_elements=["operation_key"])
            .returning(*operations.columns)
        )
        self._claim_completed = (
            update(operations)
            .where(cc.operation_key == bindparam("p_sid"))
            .values(
                status=ClaimState.COMPLETED,
                reason="Completed",
                lease_owner=None,
                charge_permission_id=bindparam("p_cpid"),
                charge_id=bindparam("p_cid"),
                updated_at=bindparam("p_now"),
            )
        )
        # Built once (constructing and cache-keying a statement costs more than running it).
        # An id given as None keeps the one recorded: `decide` and `mark_pending` only set
        # the ids they were given.
        keep: dict[str, Any] = {
            name: func.coalesce(bindparam(f"p_{name}"), getattr(cc, name))
            for name in ("charge_permission_id", "charge_id", "result_id")
        }
        self._decide = (
            update(operations)
            .where(cc.operation_key == bindparam("p_key"))
            .where(cc.status.in_(_UNDECIDED))
            .values(
                status=bindparam("p_status"),
                reason=bindparam("p_reason"),
                lease_owner=None,
                updated_at=bindparam("p_now"),
                **keep,
            )
        )
        self._mark_pending = (
            update(operations)
            .where(cc.operation_key == bindparam("p_key"))
            .where(cc.status.not_in(_DECIDED))
            .values(
                status=ClaimState.PENDING,
                reason=bindparam("p_reason"),
                lease_owner=None,  # released: the holder's heartbeat must not renew it
                lease_expires_at=bindparam("p_now"),
                updated_at=bindparam("p_now"),
                charge_permission_id=keep["charge_permission_id"],
                charge_id=keep["charge_id"],
            )
        )
        self._before_complete = (
            update(operations)
            .where(cc.operation_key == bindparam("p_key"))
            .where(cc.status.in_(_UNDECIDED))
            .values(idempotency_key=bindparam("p_idem"), updated_at=bindparam("p_now"))
        )
        self._before_complete_confirmed = self._before_complete.values(owner_confirmed=True)
        self._confirm_owner = (
            update(operations)
            .where(cc.operation_key == bindparam("p_key"))
            .where(cc.owner_confirmed.is_(False))
            .values(owner_confirmed=True)
        )
        self._let_go = (
            update(operations)
            .where(cc.operation_key == bindparam("p_key"))
            .where(cc.lease_owner == bindparam("p_owner"))
            .where(cc.status.in_(_UNDECIDED))
            .values(lease_owner=None, lease_expires_at=bindparam("p_now"))
        )
        self._for_reference = (
            select(operations).where(cc.reference == bindparam("p_ref")).order_by(cc.created_at)
        )

    def get(self, checkout_session_id: str) -> Claim | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(self._select_claim, {"p_sid": checkout_session_id}).mappings().first()
            )
        return None if row is None else _claim(row)

    def claim(
        self,
        checkout_session_id: str,
        reference: str,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        start_processing: bool = False,
        kind: OperationKind = OperationKind.COMPLETE_CHECKOUT_SESSION,
        idempotency_key: str | None = None,
        request: str | None = None,
        charge_permission_id: str | None = None,
        charge_id: str | None = None,
    ) -> ClaimAttempt:
        """Try to become the one worker making this operation; take over an expired lease.

        `checkout_session_id` is the operation's key (a checkout session id for Complete).
        With `start_processing`, a newly inserted claim also binds the pending checkout
        `reference` to the key in the same transaction; when another key holds the pending
        checkout (another session, or a saved-wallet charge), that transaction is rolled back,
        so no claim is left behind. `idempotency_key` and `request` record the exact call, so a
        takeover or reconciliation replays it.
        """
        expires = now + lease
        values = {
            "operation_key": checkout_session_id,
            "kind": kind,
            "idempotency_key": idempotency_key,
            "request": request,
            "charge_permission_id": charge_permission_id,
            "charge_id": charge_id,
            "reference": reference,
            # Our own keys (charge:<ref>...) cannot belong to anyone else; a checkout session
            # id is Amazon's, and only Amazon's answer confirms whose it is.
            "owner_confirmed": kind != OperationKind.COMPLETE_CHECKOUT_SESSION,
            "status": ClaimState.CLAIMED,
            "lease_owner": owner,
            "lease_expires_at": expires,
            "attempts": 1,
            "created_at": now,
            "updated_at": now,
        }
        with self.engine.connect() as conn, conn.begin() as transaction:
            # RETURNING, not rowcount: psycopg reports no reliable rowcount for ON CONFLICT.
            row = conn.execute(self._insert_claim, values).mappings().first()
            if row is not None:
                inserted = _claim(row)
                if not start_processing:
                    return ClaimAttempt(won=True, claim=inserted)
                if self._checkouts.bind_session(conn, reference, checkout_session_id):
                    return ClaimAttempt(won=True, claim=inserted, processing=True)
                transaction.rollback()
                return ClaimAttempt(won=True, claim=inserted, processing=False)
        current = self.get(checkout_session_id)
        if current is None:  # deleted between our insert and read (a refused foreign claim)
            return self.claim(
                checkout_session_id,
                reference,
                owner=owner,
                now=now,
                lease=lease,
                start_processing=start_processing,
                kind=kind,
                idempotency_key=idempotency_key,
                request=request,
                charge_permission_id=charge_permission_id,
                charge_id=charge_id,
            )
        if current.decided or current.reference != reference or current.lease_live(now):
            return ClaimAttempt(won=False, claim=current)
        # The lease ran out (crashed worker, or a pending outcome waiting for reconciliation):
        # exactly one caller wins this conditional update.
        cc = operations.c
        with self._tx() as conn:
            taken = conn.execute(
                update(operations)
                .where(cc.operation_key == checkout_session_id)
                .where(cc.status.in_(_UNDECIDED))
                .where(cc.attempts == current.attempts)
                .where(cc.lease_expires_at.is_(None) | (cc.lease_expires_at <= now))
                .values(
                    lease_owner=owner,
                    lease_expires_at=expires,
                    attempts=current.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
        after = self.get(checkout_session_id)
        assert after is not None
        return ClaimAttempt(won=taken == 1, claim=after, taken_over=taken == 1)

    def undecided(
        self,
        now: datetime,
        *,
        limit: int,
        charge_ids: Collection[str] | None = None,
        kinds: Collection[OperationKind] | None = None,
        confirmed_first: bool = False,
    ) -> list[Claim]:
        """Claims nobody is working on whose outcome is not decided and which are due, the
        longest-due first.

        That is every `pending` claim, and every `claimed` one whose lease ran out (its worker
        died between Amazon's answer and our write). A live lease means someone holds it now;
        a claim deferred (`defer`) is due at its `next_attempt_at`, any other since its last
        change. With `charge_ids`, only claims whose charge permission or charge is one of them;
        with `kinds`, only operations of those kinds; with `confirmed_first`, the claims Amazon
        confirmed as their reference's come before the unconfirmed ones (which may be junk).
        """
        cc = operations.c
        due_at = func.coalesce(cc.next_attempt_at, cc.updated_at)
        order = [due_at, cc.operation_key]
        if confirmed_first:
            order.insert(0, cc.owner_confirmed.desc())
        query = (
            select(operations)
            .where(cc.status.in_(_UNDECIDED))
            .where(cc.lease_expires_at.is_(None) | (cc.lease_expires_at <= now))
            .where(cc.next_attempt_at.is_(None) | (cc.next_attempt_at <= now))
            .order_by(*order)
            .limit(limit)
        )
        if charge_ids is not None:
            ids = sorted(charge_ids)
            if not ids:
                return []
            query = query.where(cc.charge_permission_id.in_(ids) | cc.charge_id.in_(ids))
        if kinds is not None:
            query = query.where(cc.kind.in_(sorted(kinds)))
        with self.engine.connect() as conn:
            return [_claim(row) for row in conn.execute(query).mappings()]

    def renew(self, held: Collection[tuple[str, str]], *, now: datetime, lease: timedelta) -> None:
        """Push forward the leases of these (checkout session id, owner) pairs: a heartbeat.

        Only a lease its owner still holds moves: a claim taken over, decided or released
        (`mark_pending`, `let_go`) is left as it is.
        """
        if not held:
            return
        cc = operations.c
        statement = (
            update(operations)
            .where(cc.operation_key == bindparam("p_sid"))
            .where(cc.lease_owner == bindparam("p_owner"))
            .where(cc.status.in_(_UNDECIDED))
            .values(lease_expires_at=now + lease)
        )
        with self._tx() as conn:
            conn.execute(statement, [{"p_sid": sid, "p_owner": owner} for sid, owner in held])

    def let_go(self, checkout_session_id: str, owner: str, *, now: datetime) -> None:
        """End this owner's lease now (its request failed): the next visit takes over at once."""
        params = {"p_key": checkout_session_id, "p_owner": owner, "p_now": now}
        with self._tx() as conn:
            conn.execute(self._let_go, params)

    def release(self, checkout_session_id: str, owner: str) -> None:
        """Forget a claim that should never have been made (a session of another checkout)."""
        cc = operations.c
        with self._tx() as conn:
            conn.execute(
                delete(operations)
                .where(cc.operation_key == checkout_session_id)
                .where(cc.lease_owner == owner)
                .where(cc.status == ClaimState.CLAIMED)
            )

    def abandon(self, checkout_session_id: str, reference: str, owner: str) -> None:
        """Undo a claim for a session that turned out to belong to another checkout.

        Also a pending one (left by an earlier Get that failed): it never sent Complete, since
        Complete is only sent once the session named this reference, so nothing is lost and the
        session's true owner finds it free.
        """
        cc = operations.c
        with self._tx() as conn:
            conn.execute(
                delete(operations)
                .where(cc.operation_key == checkout_session_id)
                .where(cc.lease_owner == owner)
                .where(cc.status.in_(_UNDECIDED))
                .where(cc.owner_confirmed.is_(False))
                .where(cc.idempotency_key.is_(None))
            )
            self._checkouts.reopen(conn, reference, checkout_session_id, only_processing=False)

    def before_complete(
        self, checkout_session_id: str, *, idempotency_key: str, confirmed: bool, now: datetime
    ) -> None:
        """Record, just before Complete is sent, its idempotency key (from now on the claim
        "may have sent Complete": a later 404 keeps it pending, it is never moved to another
        reference) and whether the session named this claim's reference (`confirm_owner`)."""
        statement = self._before_complete_confirmed if confirmed else self._before_complete
        params = {"p_key": checkout_session_id, "p_idem": idempotency_key, "p_now": now}
        with self._tx() as conn:
            conn.execute(statement, params)

    def take_unconfirmed(
        self,
        checkout_session_id: str,
        reference: str,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
    ) -> Claim | None:
        """Lease a claim bound to `reference` that Amazon never confirmed and that never sent
        Complete, so that another reference's buyer can ask Amazon whose session it is.

        None when it is held, decided, confirmed, may have sent Complete, or is gone.
        """
        cc = operations.c
        with self._tx() as conn:
            taken = conn.execute(
                update(operations)
                .where(cc.operation_key == checkout_session_id)
                .where(cc.reference == reference)
                .where(cc.status.in_(_UNDECIDED))
                .where(cc.owner_confirmed.is_(False))
                .where(cc.idempotency_key.is_(None))
                .where(cc.lease_expires_at.is_(None) | (cc.lease_expires_at <= now))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    attempts=cc.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
        return self.get(checkout_session_id) if taken == 1 else None

    def transfer(
        self,
        checkout_session_id: str,
        *,
        from_reference: str,
        to_reference: str,
        owner: str,
        now: datetime,
    ) -> Claim | None:
        """Move an unconfirmed claim this `owner` leased to the reference Amazon named.

        One transaction, conditional on the claim still being unconfirmed, never having sent
        Complete and leased by `owner`; the other reference's pending checkout, if bound to this
        session, opens again. The claim starts afresh (claimed, confirmed) under its new
        reference, still leased by `owner`. None when the condition no longer held.
        """
        cc = operations.c
        with self._tx() as conn:
            moved = conn.execute(
                update(operations)
                .where(cc.operation_key == checkout_session_id)
                .where(cc.reference == from_reference)
                .where(cc.lease_owner == owner)
                .where(cc.status.in_(_UNDECIDED))
                .where(cc.owner_confirmed.is_(False))
                .where(cc.idempotency_key.is_(None))
                .values(
                    reference=to_reference,
                    owner_confirmed=True,
                    status=ClaimState.CLAIMED,
                    reason=None,
                    next_attempt_at=None,
                    updated_at=now,
                )
            ).rowcount
            if moved != 1:
                return None
            self._checkouts.reopen(conn, from_reference, checkout_session_id, only_processing=False)
        return self.get(checkout_session_id)

    def defer(self, operation_key: str, *, until: datetime) -> None:
        """Back off: reconciliation leaves this undecided claim alone until `until`."""
        cc = operations.c
        with self._tx() as conn:
            conn.execute(
                update(operations)
                .where(cc.operation_key == operation_key)
                .where(cc.status.in_(_UNDECIDED))
                .values(next_attempt_at=until)
            )

    def mark_pending(
        self,
        checkout_session_id: str,
        *,
        reason: str,
        now: datetime,
        charge_permission_id: str | None = None,
        charge_id: str | None = None,
    ) -> None:
        """Outcome unknown: keep the row, release the lease so the next visit reconciles."""
        params = {
            "p_key": checkout_session_id,
            "p_reason": reason,
            "p_now": now,
            "p_charge_permission_id": charge_permission_id or None,
            "p_charge_id": charge_id or None,
        }
        with self._tx() as conn:
            conn.execute(self._mark_pending, params)

    def decide(
        self,
        operation_key: str,
        *,
        status: ClaimState,
        reason: str,
        now: datetime,
        charge_permission_id: str | None = None,
        charge_id: str | None = None,
        result_id: str | None = None,
        effect: Callable[[Connection], None] | None = None,
    ) -> bool:
        """Record a final outcome and its `effect` (the order, refund... rows) in one transaction.

        Only an undecided operation is decided: False (and no effect) when it was decided
        already, so an effect is never applied twice.
        """
        if not status.decided:
            raise ValueError(f"{status} is not a decision")
        params = {
            "p_key": operation_key,
            "p_status": status,
            "p_reason": reason,
            "p_now": now,
            "p_charge_permission_id": charge_permission_id or None,
            "p_charge_id": charge_id or None,
            "p_result_id": result_id or None,
        }
        with self._tx() as conn:
            changed = conn.execute(self._decide, params).rowcount
            if changed != 1:
                return False
            if effect is not None:
                effect(conn)
        return True

    def confirm_owner(self, operation_key: str) -> None:
        """Amazon confirmed the operation belongs to its reference (the session names it)."""
        with self._tx() as conn:
            conn.execute(self._confirm_owner, {"p_key": operation_key})

    def for_reference(self, reference: str) -> list[Claim]:
        """Every operation made for this order or pending checkout, oldest first."""
        with self.engine.connect() as conn:
            return self.read_for_reference(conn, reference)

    def read_for_reference(self, conn: Connection, reference: str) -> list[Claim]:
        """`for_reference` on the caller's connection (one checkout for several reads)."""
        rows = conn.execute(self._for_reference, {"p_ref": reference}).mappings()
        return [_claim(row) for row in rows]

    def record_failure(
        self, checkout_session_id: str, reference: str, *, reason: str, now: datetime
    ) -> None:
        """Final failure; the pending checkout opens again so the buyer can retry."""
        cc = operations.c
        with self._tx() as conn:
            conn.execute(
                update(operations)
                .where(cc.operation_key == checkout_session_id)
                .where(cc.status.not_in(_DECIDED))
                .values(status=ClaimState.FAILED, reason=reason, lease_owner=None, updated_at=now)
            )
            self._checkouts.reopen(conn, reference, checkout_session_id, only_processing=False)

    def record_success(
        self,
        pending: PendingCheckout,
        checkout_session_id: str,
        *,
        charge_permission_id: str | None,
        charge_id: str | None,
        now: datetime,
        charge_state: ChargeState | None = None,
    ) -> None:
        """Completed at Amazon: one transaction writes the claim, the order or saved wallet.

        `charge_state`: the one-time checkout's charge as the return saw it. An Authorize-intent
        checkout leaves it Authorized: the order is AUTHORIZED, nothing captured yet, and its
        authorization runs out after 30 days (docs/amazon-pay-api.md 5.1). Not given: the
        AuthorizeWithCapture default, a paid order.
        """
        authorized = charge_state in (ChargeState.AUTHORIZED, ChargeState.AUTHORIZATION_INITIATED)
        status = OrderState.AUTHORIZED if authorized else OrderState.PAID
        if charge_state is ChargeState.CAPTURE_INITIATED:
            status = OrderState.CAPTURE_PENDING
        with self._tx() as conn:
            conn.execute(
                self._claim_completed,
                {
                    "p_sid": checkout_session_id,
                    "p_cpid": charge_permission_id,
                    "p_cid": charge_id,
                    "p_now": now,
                },
            )
            self._checkouts.mark_completed(conn, pending.reference, checkout_session_id)
            if pending.kind == CheckoutKind.WALLET_SETUP and charge_permission_id:
                self._wallets.add(
                    conn,
                    buyer_id=pending.buyer_id,
                    charge_permission_id=charge_permission_id,
                    checkout_session_id=checkout_session_id,
                    reference=pending.reference,
                    now=now,
                )
            elif pending.kind == CheckoutKind.ONE_TIME:
                self._orders.add(
                    conn,
                    reference=pending.reference,
                    buyer_id=pending.buyer_id,
                    amount=pending.amount or Decimal(0),
                    currency=pending.currency,
                    items=pending.items,
                    status=status,
                    checkout_session_id=checkout_session_id,
                    charge_permission_id=charge_permission_id,
                    charge_id=charge_id,
                    now=now,
                    captured_amount=None if status is OrderState.PAID else Decimal(0),
                    authorization_expires_at=now + timedelta(days=30) if authorized else None,
                )

    def completed_for(self, reference: str) -> Claim | None:
        """The claim that completed this pending checkout, if any."""
        cc = operations.c
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(operations)
                    .where(cc.reference == reference)
                    .where(cc.status == ClaimState.COMPLETED)
                )
                .mappings()
                .first()
            )
        return None if row is None else _claim(row)
