"""The database engine: pooled, with every wait on the database bounded by `DatabaseTimeouts`.

Also the small base every repository shares: one engine, a transaction helper and the
dialect's INSERT (for ON CONFLICT DO NOTHING on both SQLite and PostgreSQL).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.abc import PQGen
from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InvalidatePoolError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

__all__ = [
    "BoundedConnection",
    "DatabaseTimeouts",
    "Repository",
    "create_store_engine",
    "ping",
    "unbounded",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseTimeouts:
    """How long the shop waits on its database, step by step, in seconds.

    A request that finds the database gone or frozen fails after at most `longest_wait` and is
    answered with the "briefly unavailable" page. Flask config keys `DB_<FIELD>_SECONDS`.
    """

    connect: float = 2.0  # a new connection, handshake included (libpq's minimum is 2 s)
    pool: float = 2.0  # for a free pooled connection when all are in use
    statement: float = 2.5  # PostgreSQL statement_timeout: one statement in a live server
    lock: float = 2.0  # PostgreSQL lock_timeout: waiting for a row or advisory lock
    ping: float = 1.0  # the round trip that checks a pooled connection before reuse
    sqlite_busy: float = 5.0  # SQLite: waiting for the single writer's lock

    @property
    def round_trip(self) -> float:
        """The client's own limit on one round trip: a little above the server's timeouts.

        The server cancels a slow statement itself; this catches a server that cannot answer at
        all (frozen, or a network gone quiet), where the kernel still accepts and acknowledges
        every packet, so no TCP timeout or keepalive ever fires.
        """
        return max(self.statement, self.lock) + 0.5

    @property
    def longest_wait(self) -> float:
        """The most one database call waits before it raises, the database being unresponsive."""
        return self.pool + max(self.ping + self.connect, self.round_trip)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DatabaseTimeouts:
        """Read `DB_CONNECT_SECONDS`, `DB_STATEMENT_SECONDS`... (Flask config); defaults else."""
        values = {
            field.name: float(config[key])
            for field in fields(cls)
            if (key := f"DB_{field.name.upper()}_SECONDS") in config
        }
        return cls(**values)


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every round trip gives up after `round_trip_timeout` seconds.

    psycopg drives each operation (execute, commit, rollback) through `wait`; past the limit the
    connection is closed under it, the way psycopg itself ends a cancel the server never
    answers, and the caller gets an OperationalError. SQLAlchemy then sees a closed connection
    and drops it from the pool. None lifts the limit (schema upgrades, see `unbounded`).
    """

    round_trip_timeout: float | None = None

    def wait(self, gen: PQGen[Any], interval: float = 0.1, timeout: float | None = None) -> Any:
        limit = self.round_trip_timeout if timeout is None else timeout
        try:
            return super().wait(gen, interval, limit)
        except pg_errors._WaitTimeout:  # psycopg asks the callers of wait() to convert it
            if timeout is not None:
                raise  # psycopg's own bounded wait (a cancel): it handles its timeout itself
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database did not answer within {limit:.1f} s; connection closed"
            ) from None

    def ping(self, timeout: float) -> None:
        """One round trip outside any transaction, with its own limit."""
        saved, self.round_trip_timeout = self.round_trip_timeout, timeout
        autocommit = self.autocommit
        idle = self.info.transaction_status == pq.TransactionStatus.IDLE
        try:
            if idle:
                self.autocommit = True  # no BEGIN: the ping is the only round trip
            self.execute(";")
        finally:
            self.round_trip_timeout = saved
            if idle and not self.closed:
                self.autocommit = autocommit


def _sqlite_pragmas(busy_ms: int) -> Any:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the single writer; busy_timeout makes a writer wait for
        # the lock (a few seconds, never longer) instead of failing at once when several
        # workers claim at the same moment.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return apply


def _postgres_options(timeouts: DatabaseTimeouts) -> str:
    """libpq `options`: the server-side limits every session of ours starts with."""
    statement_ms = round(timeouts.statement * 1000)
    lock_ms = round(timeouts.lock * 1000)
    return (
        f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms}"
        # A transaction left open by a stuck client must not hold row locks for long.
        f" -c idle_in_transaction_session_timeout={max(statement_ms * 4, 10_000)}"
    )


def _bound_postgres(engine: Engine, timeouts: DatabaseTimeouts) -> None:
    """Connect through BoundedConnection, and ping pooled connections with `timeouts.ping`."""
    options = _postgres_options(timeouts)

    @event.listens_for(engine, "do_connect")
    def _connect(
        _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> BoundedConnection:
        cparams.setdefault("connect_timeout", max(2, round(timeouts.connect)))
        given = cparams.get("options")
        cparams["options"] = f"{given} {options}" if given else options
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.round_trip_timeout = timeouts.round_trip
        return connection

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["fresh"] = True

    @event.listens_for(engine, "checkout")
    def _ping(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        # SQLAlchemy's own pre-ping would get the full round-trip limit; a pooled connection
        # that does not answer a `;` within `timeouts.ping` is dropped with all its pool
        # siblings (a restart or a freeze hits them all), and the pool opens a fresh one.
        if record.info.pop("fresh", False) or not isinstance(dbapi_connection, BoundedConnection):
            return
        try:
            dbapi_connection.ping(timeouts.ping)
        except psycopg.Error as exc:
            raise InvalidatePoolError(f"pooled connection failed its ping: {exc}") from exc


def create_store_engine(url: str, timeouts: DatabaseTimeouts | None = None) -> Engine:
    """One engine per app: pooled, every wait bounded by `timeouts`.

    SQLite's pool hands out the most recently returned connection (LIFO). Each SQLite
    connection has its own page cache, which it drops when it starts a transaction and finds
    the database changed by someone else; with the default FIFO order every request got the
    connection idle the longest, found the previous request's writes and re-read its pages.
    """
    limits = timeouts or DatabaseTimeouts()
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": limits.sqlite_busy},
            pool_pre_ping=False,
            pool_use_lifo=True,
            pool_timeout=limits.pool,
        )
        event.listen(engine, "connect", _sqlite_pragmas(round(limits.sqlite_busy * 1000)))
        return engine
    engine = create_engine(
        url, pool_pre_ping=False, pool_size=10, max_overflow=10, pool_timeout=limits.pool
    )
    if engine.dialect.driver == "psycopg":
        _bound_postgres(engine, limits)
    return engine


@contextmanager
def unbounded(conn: Connection) -> Iterator[Connection]:
    """Lift the time limits on this one connection while the block runs (schema upgrades).

    An operator's upgrade may rewrite a large table or wait for another upgrader's lock; the
    limits come back before the connection returns to the pool.
    """
    dbapi: Any = conn.connection.dbapi_connection  # typed as the DBAPI protocol
    if not isinstance(dbapi, BoundedConnection):
        yield conn
        return
    saved = dbapi.round_trip_timeout
    dbapi.round_trip_timeout = None
    conn.execute(text("SET statement_timeout = 0"))
    conn.execute(text("SET lock_timeout = 0"))
    conn.execute(text("SET idle_in_transaction_session_timeout = 0"))
    conn.commit()
    try:
        yield conn
    finally:
        if not dbapi.closed:
            conn.rollback()
            # RESET goes back to the session's start-up value: our `options`.
            conn.execute(text("RESET statement_timeout"))
            conn.execute(text("RESET lock_timeout"))
            conn.execute(text("RESET idle_in_transaction_session_timeout"))
            conn.commit()
        dbapi.round_trip_timeout = saved


def ping(engine: Engine) -> bool:
    """Whether the database answers a trivial query (within the engine's time limits)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:  # the DBAPI's errors, and the pool's timeout
        return False
    return True


class Repository:
    """What every repository shares: the engine, transactions and the dialect's INSERT."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _insert(self, table: Table) -> Any:
        """INSERT with `.on_conflict_do_nothing` for this dialect."""
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        raise RuntimeError(f"unsupported database dialect {self._dialect}")
