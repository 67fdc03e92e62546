"""Where the database's schema stands against the code's, and upgrading it under a lock.

Alembic revisions in `migrations/` are the only way the schema changes. A database made by
release 0.1.0 (tables, no `alembic_version`) is recognised as `LEGACY` and upgraded in place.
Two processes upgrading at once serialise on a lock (PostgreSQL advisory lock, or a file lock
beside a SQLite file) and the second finds nothing left to do.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from storefront.db.engine import unbounded

__all__ = [
    "UPGRADE_COMMAND",
    "SchemaGate",
    "SchemaState",
    "SchemaStatus",
    "schema_status",
    "upgrade",
]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
UPGRADE_COMMAND = "flask --app app db upgrade"
# Tables of release 0.1.0: any of them without a version table means a pre-migration database.
_LEGACY_TABLES = frozenset(
    {"pending_checkouts", "checkout_claims", "orders", "saved_payment_methods"}
)
_PG_LOCK_KEY = 7271828  # the same key release 0.1.0 serialised create_all with


class SchemaState(enum.StrEnum):
    CURRENT = "current"  # at the code's head revision
    EMPTY = "empty"  # no tables at all: a new database
    LEGACY = "legacy"  # made by release 0.1.0, before migrations
    BEHIND = "behind"  # an older revision
    AHEAD = "ahead"  # a revision this code does not know (newer code migrated it)


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
    current: str | None  # the database's revision, None when it has none
    head: str  # the code's

    @property
    def ready(self) -> bool:
        return self.state is SchemaState.CURRENT

    def message(self) -> str:
        """One line for the log and /healthz, naming the command to run."""
        if self.state is SchemaState.CURRENT:
            return f"database schema is current (revision {self.head})"
        if self.state is SchemaState.AHEAD:
            return (
                f"database schema is at revision {self.current}, newer than this code "
                f"({self.head}): deploy the newer code"
            )
        where = "from before migrations" if self.current is None else f"at {self.current}"
        if self.state is SchemaState.EMPTY:
            where = "empty"
        return (
            f"database schema is {where}, this code needs revision {self.head}: "
            f"run `{UPGRADE_COMMAND}`"
        )


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _status(conn: Connection, head: str) -> SchemaStatus:
    current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return SchemaStatus(SchemaState.CURRENT, current, head)
    if current is None:
        tables = set(inspect(conn).get_table_names())
        state = SchemaState.LEGACY if tables & _LEGACY_TABLES else SchemaState.EMPTY
        return SchemaStatus(state, None, head)
    known = ScriptDirectory.from_config(alembic_config()).get_revision(current) is not None
    return SchemaStatus(SchemaState.BEHIND if known else SchemaState.AHEAD, current, head)


def schema_status(engine: Engine) -> SchemaStatus:
    """Read where the database stands (raises SQLAlchemy's errors when it does not answer)."""
    head = head_revision()
    with engine.connect() as conn:
        return _status(conn, head)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection that holds the one lock every upgrading process takes, without time limits.

    An operator's upgrade may rewrite a large table, and a worker creating a new database's
    schema may wait for another worker doing the same: neither is a request waiting (the
    schema gate checks in the background), so the engine's limits are lifted here.
    """
    database = engine.url.database or ""
    if engine.dialect.name == "sqlite" and database not in ("", ":memory:"):
        lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
        with lock_path.open("a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                with engine.connect() as conn:
                    yield conn
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return
    with engine.connect() as opened, unbounded(opened) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
            conn.commit()
        try:
            yield conn
        finally:
            if engine.dialect.name == "postgresql" and not conn.invalidated:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
                conn.commit()


def upgrade(engine: Engine, *, only_if_empty: bool = False) -> SchemaStatus:
    """Bring the schema to the code's head under the migration lock; return where it ends.

    `only_if_empty`: create a new database's schema but leave any other state alone (what the
    app does at start-up; upgrading a database with rows is the operator's step).
    """
    head = head_revision()
    with _migration_lock(engine) as conn:
        before = _status(conn, head)
        conn.rollback()
        if before.ready or before.state is SchemaState.AHEAD:
            return before
        if only_if_empty and before.state is not SchemaState.EMPTY:
            return before
        logger.info("upgrading the database schema: %s", before.message())
        command.upgrade(alembic_config(conn), "head")
        conn.commit()
        after = _status(conn, head)
        conn.rollback()
    logger.info(after.message())
    return after


class SchemaGate:
    """Serve only against a current schema: checked at start-up and, until then, on requests.

    A new (empty) database gets its schema at once; any other state waits for the operator's
    `flask --app app db upgrade` and is reported in one line (log and /healthz). A database
    that does not answer is not a schema problem: the gate stays closed and looks again at most
    every `recheck_seconds`, so a worker boots without its database and serves once it is back.
    Checks run in a background thread: start-up waits for the first one up to
    `start_up_seconds` (another process may be creating the schema), a request waits for a
    later one at most `patience_seconds`, so a frozen database never holds one up.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        recheck_seconds: float = 2.0,
        patience_seconds: float = 1.0,
        start_up_seconds: float = 15.0,
    ) -> None:
        self._engine = engine
        self._recheck = recheck_seconds
        self._patience = patience_seconds
        self._start_up = start_up_seconds
        self._lock = threading.Lock()
        self._open = False
        self._checked_at = -float("inf")
        self._checked_once = False
        self._checking: threading.Thread | None = None
        self._line = "database schema not checked yet"

    @property
    def line(self) -> str:
        return self._line

    def ready(self) -> bool:
        """True once the schema was found current (then for the life of the process)."""
        if self._open:
            return True
        with self._lock:
            now = time.monotonic()
            if self._checking is None and now - self._checked_at >= self._recheck:
                self._checked_at = now
                self._checking = threading.Thread(
                    target=self._run_check, name="schema-gate", daemon=True
                )
                self._checking.start()
            checking, first = self._checking, not self._checked_once
        if checking is not None:
            checking.join(self._start_up if first else self._patience)
        return self._open

    def _run_check(self) -> None:
        try:
            self._check()
        finally:
            with self._lock:
                self._checking = None
                self._checked_once = True

    def _check(self) -> None:
        try:
            status = schema_status(self._engine)
            if status.state in (SchemaState.EMPTY, SchemaState.LEGACY, SchemaState.BEHIND):
                # Maybe another process is upgrading right now (SQLite commits each revision
                # on its own, so it shows a revision in between): wait for its migration lock
                # and read again. Only an empty database's schema is created here.
                status = upgrade(self._engine, only_if_empty=True)
        except (SQLAlchemyError, OSError) as exc:
            self._line = f"database unavailable ({type(exc).__name__})"
            logger.warning("database schema not checked: %s", self._line)
            return
        self._line = status.message()
        self._open = status.ready
        if not status.ready:
            logger.error(self._line)
