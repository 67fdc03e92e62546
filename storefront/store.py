"""Persistence with SQLAlchemy Core: pending checkouts, completion claims, orders, saved methods.

One `Store` wraps one engine. SQLite (WAL, busy timeout) by default, PostgreSQL via psycopg 3.
The claims table is what makes Complete Checkout Session run once per checkout session id:
`INSERT ... ON CONFLICT DO NOTHING` picks one winner across threads and processes, and a lease
lets a later request take over when the winner died mid-flight.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.types import TypeDecorator

__all__ = [
    "CLAIM_CLAIMED",
    "CLAIM_COMPLETED",
    "CLAIM_FAILED",
    "CLAIM_PENDING",
    "KIND_ONE_TIME",
    "KIND_WALLET",
    "Claim",
    "ClaimAttempt",
    "Order",
    "PendingCheckout",
    "SavedPaymentMethod",
    "Store",
    "metadata",
    "new_reference",
]

KIND_ONE_TIME = "one_time"
KIND_WALLET = "wallet_setup"

# Pending checkout states: open (button shown, or a try failed), processing (a checkout session
# is being completed for it), completed.
PENDING_OPEN = "open"
PENDING_PROCESSING = "processing"
PENDING_COMPLETED = "completed"

# Claim states: claimed (a worker holds the lease), pending (outcome unknown: reconcile on the
# next visit), completed / failed (decided, final).
CLAIM_CLAIMED = "claimed"
CLAIM_PENDING = "pending"
CLAIM_COMPLETED = "completed"
CLAIM_FAILED = "failed"
DECIDED = (CLAIM_COMPLETED, CLAIM_FAILED)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the column, the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

pending_checkouts = Table(
    "pending_checkouts",
    metadata,
    Column("reference", String(40), primary_key=True),
    Column("buyer_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("amount", Numeric(12, 2), nullable=True),  # NULL for a wallet setup (Complete with {})
    Column("currency", String(3), nullable=False),
    Column("items", Text, nullable=False, default="[]"),  # JSON snapshot of the cart
    Column("state", String(16), nullable=False, default=PENDING_OPEN),
    Column("checkout_session_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

checkout_claims = Table(
    "checkout_claims",
    metadata,
    Column("checkout_session_id", String(64), primary_key=True),
    Column("reference", String(40), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=1),
    Column("reason", String(64), nullable=True),
    Column("charge_permission_id", String(64), nullable=True),
    Column("charge_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The reconciler's scan: undecided claims (claimed/pending) whose lease has run out.
    Index("ix_checkout_claims_status_lease", "status", "lease_expires_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("reference", String(40), primary_key=True),
    Column("buyer_id", String(64), nullable=False, index=True),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("items", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("checkout_session_id", String(64), nullable=False),
    Column("charge_permission_id", String(64), nullable=True),
    Column("charge_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

saved_payment_methods = Table(
    "saved_payment_methods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("buyer_id", String(64), nullable=False, index=True),
    Column("charge_permission_id", String(64), nullable=False, unique=True),
    Column("checkout_session_id", String(64), nullable=False),
    Column("reference", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


def new_reference() -> str:
    """An unguessable pending-checkout reference: 22 URL-safe characters (128 random bits)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class PendingCheckout:
    reference: str
    buyer_id: str
    kind: str
    amount: Decimal | None
    currency: str
    items: list[dict[str, Any]]
    state: str
    checkout_session_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class Claim:
    checkout_session_id: str
    reference: str
    status: str
    lease_owner: str | None
    lease_expires_at: datetime | None
    attempts: int
    reason: str | None
    charge_permission_id: str | None
    charge_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def decided(self) -> bool:
        return self.status in DECIDED

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


@dataclass(frozen=True)
class Order:
    reference: str
    buyer_id: str
    amount: Decimal
    currency: str
    items: list[dict[str, Any]]
    status: str
    checkout_session_id: str
    charge_permission_id: str | None
    charge_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class SavedPaymentMethod:
    buyer_id: str
    charge_permission_id: str
    checkout_session_id: str
    reference: str
    created_at: datetime


def _pending(row: RowMapping) -> PendingCheckout:
    amount = row["amount"]
    return PendingCheckout(
        reference=row["reference"],
        buyer_id=row["buyer_id"],
        kind=row["kind"],
        amount=None if amount is None else Decimal(str(amount)),
        currency=row["currency"],
        items=json.loads(row["items"] or "[]"),
        state=row["state"],
        checkout_session_id=row["checkout_session_id"],
        created_at=row["created_at"],
    )


def _claim(row: RowMapping) -> Claim:
    return Claim(**{c.name: row[c.name] for c in checkout_claims.columns})


def _order(row: RowMapping) -> Order:
    values = {c.name: row[c.name] for c in orders.columns}
    values["amount"] = Decimal(str(values["amount"]))
    values["items"] = json.loads(values["items"])
    return Order(**values)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout makes a writer wait for the
    # lock instead of failing with "database is locked" when several workers claim at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """One engine per app: pooled, with SQLite tuned for several threads and processes.

    SQLite's pool hands out the most recently returned connection (LIFO). Each SQLite
    connection has its own page cache, which it drops when it starts a transaction and finds
    the database changed by someone else; with the default FIFO order every request got the
    connection idle the longest, found the previous request's writes and re-read its pages.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=False,
            pool_use_lifo=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=10)


class Store:
    """All reads and writes of the shop's tables. Use cases receive it as an argument."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        # The return path's statements, built once: SQLAlchemy then finds their compiled form in
        # its cache by a memoised key instead of rebuilding the statement and its key every call.
        pc, cc = pending_checkouts.c, checkout_claims.c
        self._select_pending = select(pending_checkouts).where(pc.reference == bindparam("p_ref"))
        self._select_claim = select(checkout_claims).where(
            cc.checkout_session_id == bindparam("p_sid")
        )
        # RETURNING the whole row: the winner needs no second read.
        self._insert_claim = (
            self._insert(checkout_claims)
            .on_conflict_do_nothing(index_elements=["checkout_session_id"])
            .returning(*checkout_claims.columns)
        )
        self._start_processing = (
            update(pending_checkouts)
            .where(pc.reference == bindparam("p_ref"))
            .where((pc.state == PENDING_OPEN) | (pc.checkout_session_id == bindparam("p_sid")))
            .values(state=PENDING_PROCESSING, checkout_session_id=bindparam("p_sid"))
        )
        self._claim_completed = (
            update(checkout_claims)
            .where(cc.checkout_session_id == bindparam("p_sid"))
            .values(
                status=CLAIM_COMPLETED,
                reason="Completed",
                lease_owner=None,
                charge_permission_id=bindparam("p_cpid"),
                charge_id=bindparam("p_cid"),
                updated_at=bindparam("p_now"),
            )
        )
        self._pending_completed = (
            update(pending_checkouts)
            .where(pc.reference == bindparam("p_ref"))
            .values(state=PENDING_COMPLETED, checkout_session_id=bindparam("p_sid"))
        )
        self._insert_saved_method = self._insert(saved_payment_methods).on_conflict_do_nothing(
            index_elements=["charge_permission_id"]
        )
        self._insert_order = self._insert(orders).on_conflict_do_nothing(
            index_elements=["reference"]
        )

    # -- schema -------------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the tables if missing; safe when two processes start at the same moment."""
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    if self._dialect == "postgresql":
                        # Serialise concurrent create_all calls: PostgreSQL otherwise races on
                        # its catalog (duplicate pg_type rows).
                        conn.execute(text("SELECT pg_advisory_xact_lock(7271828)"))
                    metadata.create_all(conn, checkfirst=True)
                    # create_all skips tables that exist; an index added later still has to
                    # reach a database made by an older version.
                    for index in checkout_claims.indexes:
                        index.create(conn, checkfirst=True)
                return
            except (OperationalError, IntegrityError, ProgrammingError):
                # Another process created a table between our check and our CREATE.
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError:
            return False
        return True

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _insert(self, table: Table) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        raise RuntimeError(f"unsupported database dialect {self._dialect}")

    # -- pending checkouts --------------------------------------------------------------------

    def find_or_create_pending(
        self,
        *,
        buyer_id: str,
        kind: str,
        amount: Decimal | None,
        currency: str,
        items: list[dict[str, Any]],
        now: datetime,
        reuse_window: timedelta,
    ) -> PendingCheckout:
        """Reuse the buyer's open, recent pending checkout of this kind and amount, or make one."""
        items_json = json.dumps(items, sort_keys=True, separators=(",", ":"))
        with self._tx() as conn:
            query = (
                select(pending_checkouts)
                .where(pending_checkouts.c.buyer_id == buyer_id)
                .where(pending_checkouts.c.kind == kind)
                .where(pending_checkouts.c.currency == currency)
                .where(pending_checkouts.c.state == PENDING_OPEN)
                .where(pending_checkouts.c.created_at > now - reuse_window)
                .order_by(pending_checkouts.c.created_at.desc())
            )
            for row in conn.execute(query).mappings():
                found = _pending(row)
                if found.amount == amount and found.items == items:
                    return found
            reference = new_reference()
            conn.execute(
                insert(pending_checkouts).values(
                    reference=reference,
                    buyer_id=buyer_id,
                    kind=kind,
                    amount=amount,
                    currency=currency,
                    items=items_json,
                    state=PENDING_OPEN,
                    created_at=now,
                )
            )
        found_new = self.get_pending(reference)
        assert found_new is not None
        return found_new

    def get_pending(self, reference: str) -> PendingCheckout | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._select_pending, {"p_ref": reference}).mappings().first()
        return None if row is None else _pending(row)

    def start_processing(self, reference: str, checkout_session_id: str) -> bool:
        """Bind the pending checkout to this session id unless another session holds it."""
        with self._tx() as conn:
            return self._bind_session(conn, reference, checkout_session_id)

    def _bind_session(self, conn: Connection, reference: str, checkout_session_id: str) -> bool:
        params = {"p_ref": reference, "p_sid": checkout_session_id}
        return conn.execute(self._start_processing, params).rowcount == 1

    # -- claims -------------------------------------------------------------------------------

    def get_claim(self, checkout_session_id: str) -> Claim | None:
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
    ) -> ClaimAttempt:
        """Try to become the one worker completing this session; take over an expired lease.

        With `start_processing`, a newly inserted claim also binds the pending checkout to the
        session (`start_processing`) in the same transaction; when another session holds the
        pending checkout, that transaction is rolled back, so no claim is left behind.
        """
        expires = now + lease
        values = {
            "checkout_session_id": checkout_session_id,
            "reference": reference,
            "status": CLAIM_CLAIMED,
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
                if self._bind_session(conn, reference, checkout_session_id):
                    return ClaimAttempt(won=True, claim=inserted, processing=True)
                transaction.rollback()
                return ClaimAttempt(won=True, claim=inserted, processing=False)
        current = self.get_claim(checkout_session_id)
        if current is None:  # deleted between our insert and read (a refused foreign claim)
            return self.claim(
                checkout_session_id,
                reference,
                owner=owner,
                now=now,
                lease=lease,
                start_processing=start_processing,
            )
        if current.decided or current.reference != reference or current.lease_live(now):
            return ClaimAttempt(won=False, claim=current)
        # The lease ran out (crashed worker, or a pending outcome waiting for reconciliation):
        # exactly one caller wins this conditional update.
        with self._tx() as conn:
            taken = conn.execute(
                update(checkout_claims)
                .where(checkout_claims.c.checkout_session_id == checkout_session_id)
                .where(checkout_claims.c.status.in_([CLAIM_CLAIMED, CLAIM_PENDING]))
                .where(checkout_claims.c.attempts == current.attempts)
                .where(
                    (checkout_claims.c.lease_expires_at.is_(None))
                    | (checkout_claims.c.lease_expires_at <= now)
                )
                .values(
                    lease_owner=owner,
                    lease_expires_at=expires,
                    attempts=current.attempts + 1,
                    updated_at=now,
                )
            ).rowcount
        after = self.get_claim(checkout_session_id)
        assert after is not None
        return ClaimAttempt(won=taken == 1, claim=after, taken_over=taken == 1)

    def undecided_claims(
        self, now: datetime, *, limit: int, charge_ids: Collection[str] | None = None
    ) -> list[Claim]:
        """Claims nobody is working on whose outcome is not decided, the stalest first.

        That is every `pending` claim, and every `claimed` one whose lease ran out (its worker
        died between Amazon's answer and our write). A live lease means someone holds it now.
        With `charge_ids`, only claims whose charge permission or charge is one of them.
        """
        cc = checkout_claims.c
        query = (
            select(checkout_claims)
            .where(cc.status.in_([CLAIM_CLAIMED, CLAIM_PENDING]))
            .where(cc.lease_expires_at.is_(None) | (cc.lease_expires_at <= now))
            .order_by(cc.updated_at, cc.checkout_session_id)
            .limit(limit)
        )
        if charge_ids is not None:
            ids = sorted(charge_ids)
            if not ids:
                return []
            query = query.where(cc.charge_permission_id.in_(ids) | cc.charge_id.in_(ids))
        with self.engine.connect() as conn:
            return [_claim(row) for row in conn.execute(query).mappings()]

    def release_claim(self, checkout_session_id: str, owner: str) -> None:
        """Forget a claim that should never have been made (a session of another checkout)."""
        with self._tx() as conn:
            conn.execute(
                delete(checkout_claims)
                .where(checkout_claims.c.checkout_session_id == checkout_session_id)
                .where(checkout_claims.c.lease_owner == owner)
                .where(checkout_claims.c.status.in_([CLAIM_CLAIMED]))
            )

    def abandon_claim(self, checkout_session_id: str, reference: str, owner: str) -> None:
        """Undo a claim for a session that turned out to belong to another checkout."""
        with self._tx() as conn:
            conn.execute(
                delete(checkout_claims)
                .where(checkout_claims.c.checkout_session_id == checkout_session_id)
                .where(checkout_claims.c.lease_owner == owner)
                .where(checkout_claims.c.status == CLAIM_CLAIMED)
            )
            conn.execute(
                update(pending_checkouts)
                .where(pending_checkouts.c.reference == reference)
                .where(pending_checkouts.c.checkout_session_id == checkout_session_id)
                .where(pending_checkouts.c.state == PENDING_PROCESSING)
                .values(state=PENDING_OPEN, checkout_session_id=None)
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
        values: dict[str, Any] = {
            "status": CLAIM_PENDING,
            "reason": reason,
            "lease_expires_at": now,
            "updated_at": now,
        }
        if charge_permission_id:
            values["charge_permission_id"] = charge_permission_id
        if charge_id:
            values["charge_id"] = charge_id
        with self._tx() as conn:
            conn.execute(
                update(checkout_claims)
                .where(checkout_claims.c.checkout_session_id == checkout_session_id)
                .where(checkout_claims.c.status.not_in(DECIDED))
                .values(**values)
            )

    def record_failure(
        self, checkout_session_id: str, reference: str, *, reason: str, now: datetime
    ) -> None:
        """Final failure; the pending checkout opens again so the buyer can retry."""
        with self._tx() as conn:
            conn.execute(
                update(checkout_claims)
                .where(checkout_claims.c.checkout_session_id == checkout_session_id)
                .where(checkout_claims.c.status.not_in(DECIDED))
                .values(status=CLAIM_FAILED, reason=reason, lease_owner=None, updated_at=now)
            )
            conn.execute(
                update(pending_checkouts)
                .where(pending_checkouts.c.reference == reference)
                .where(pending_checkouts.c.checkout_session_id == checkout_session_id)
                .where(pending_checkouts.c.state != PENDING_COMPLETED)
                .values(state=PENDING_OPEN, checkout_session_id=None)
            )

    def record_success(
        self,
        pending: PendingCheckout,
        checkout_session_id: str,
        *,
        charge_permission_id: str | None,
        charge_id: str | None,
        now: datetime,
    ) -> None:
        """Completed at Amazon: one transaction writes the claim, the order or saved method."""
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
            conn.execute(
                self._pending_completed,
                {"p_ref": pending.reference, "p_sid": checkout_session_id},
            )
            if pending.kind == KIND_WALLET and charge_permission_id:
                conn.execute(
                    self._insert_saved_method,
                    {
                        "buyer_id": pending.buyer_id,
                        "charge_permission_id": charge_permission_id,
                        "checkout_session_id": checkout_session_id,
                        "reference": pending.reference,
                        "created_at": now,
                    },
                )
            elif pending.kind == KIND_ONE_TIME:
                conn.execute(
                    self._insert_order,
                    {
                        "reference": pending.reference,
                        "buyer_id": pending.buyer_id,
                        "amount": pending.amount or Decimal(0),
                        "currency": pending.currency,
                        "items": json.dumps(pending.items, sort_keys=True),
                        "status": "paid",
                        "checkout_session_id": checkout_session_id,
                        "charge_permission_id": charge_permission_id,
                        "charge_id": charge_id,
                        "created_at": now,
                    },
                )

    def completed_claim_for(self, reference: str) -> Claim | None:
        """The claim that completed this pending checkout, if any."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(checkout_claims)
                    .where(checkout_claims.c.reference == reference)
                    .where(checkout_claims.c.status == CLAIM_COMPLETED)
                )
                .mappings()
                .first()
            )
        return None if row is None else _claim(row)

    # -- orders and saved payment methods -----------------------------------------------------

    def get_order(self, reference: str) -> Order | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(orders).where(orders.c.reference == reference))
                .mappings()
                .first()
            )
        return None if row is None else _order(row)

    def saved_payment_methods(self, buyer_id: str) -> list[SavedPaymentMethod]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(saved_payment_methods)
                .where(saved_payment_methods.c.buyer_id == buyer_id)
                .order_by(saved_payment_methods.c.id)
            ).mappings()
            return [
                SavedPaymentMethod(
                    buyer_id=r["buyer_id"],
                    charge_permission_id=r["charge_permission_id"],
                    checkout_session_id=r["checkout_session_id"],
                    reference=r["reference"],
                    created_at=r["created_at"],
                )
                for r in rows
            ]
