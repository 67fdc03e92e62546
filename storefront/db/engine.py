"""The database engine: pooled, with SQLite tuned for several threads and processes.

Also the small base every repository shares: one engine, a transaction helper and the
dialect's INSERT (for ON CONFLICT DO NOTHING on both SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

__all__ = ["Repository", "create_store_engine", "ping"]


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


def ping(engine: Engine) -> bool:
    """Whether the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError:
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
