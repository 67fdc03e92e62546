"""Every wait on the database is bounded: server-side timeouts for a live server, a client-side
limit per round trip for a frozen one (whose kernel still ACKs), the pool's ping, SQLite's lock."""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from storefront.db import DatabaseTimeouts, create_store_engine
from storefront.db.engine import unbounded
from storefront.db.health import HealthProbe
from storefront.db.migrations import (
    _PG_LOCK_KEY,
    SchemaGate,
    SchemaState,
    alembic_config,
    upgrade,
)
from tests.outages.conftest import OutagePostgres

LIMITS = DatabaseTimeouts()


@pytest.fixture
def engine(fresh_database: str) -> Iterator[Engine]:
    engine = create_store_engine(fresh_database)
    yield engine
    engine.dispose()


def elapsed(started: float) -> float:
    return round(time.monotonic() - started, 2)


@pytest.mark.postgres
def test_a_slow_statement_is_canceled_by_the_server_and_the_connection_survives(
    engine: Engine,
) -> None:
    with engine.connect() as conn:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="statement timeout"):
            conn.execute(text("SELECT pg_sleep(30)"))
        assert elapsed(started) < LIMITS.statement + 0.5
        conn.rollback()
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "2s"
        assert conn.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.postgres
def test_a_lock_wait_gives_up_after_the_lock_timeout(engine: Engine) -> None:
    with engine.connect() as holder, engine.connect() as waiter:
        holder.execute(text("SELECT pg_advisory_lock(42)"))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="lock timeout"):
            waiter.execute(text("SELECT pg_advisory_lock(42)"))
        assert elapsed(started) < LIMITS.lock + 0.5
        holder.execute(text("SELECT pg_advisory_unlock(42)"))


@pytest.mark.postgres
def test_a_frozen_server_costs_one_round_trip_limit_then_the_connection_is_dropped(
    engine: Engine, outage_postgres: OutagePostgres
) -> None:
    conn = engine.connect()
    conn.execute(text("SELECT 1"))
    with outage_postgres.frozen():
        started = time.monotonic()
        with pytest.raises(OperationalError, match="did not answer within") as caught:
            conn.execute(text("SELECT 1"))
        in_flight = elapsed(started)
        conn.close()
        started = time.monotonic()
        with pytest.raises(OperationalError), engine.connect() as again:
            again.execute(text("SELECT 1"))
        next_call = elapsed(started)
    assert caught.value.connection_invalidated
    assert LIMITS.round_trip - 0.2 < in_flight < LIMITS.round_trip + 1.0, in_flight
    # The next checkout pings its pooled connection (no: it was dropped) or connects anew.
    assert next_call < LIMITS.longest_wait, next_call
    with engine.connect() as conn_after:
        assert conn_after.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.postgres
def test_a_pooled_connection_is_pinged_with_its_own_short_limit(
    engine: Engine, outage_postgres: OutagePostgres
) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # one connection is now in the pool
    with outage_postgres.frozen():
        started = time.monotonic()
        with pytest.raises(OperationalError, match="timeout expired"), engine.connect() as c:
            c.execute(text("SELECT 1"))
        took = elapsed(started)
    # ping (1 s) + a fresh connection's handshake (connect timeout, 2 s), never the
    # round-trip limit on top
    assert LIMITS.ping + LIMITS.connect - 0.3 < took < LIMITS.ping + LIMITS.connect + 1.0, took


@pytest.mark.postgres
def test_schema_upgrades_run_without_the_limits_and_give_them_back(engine: Engine) -> None:
    with engine.connect() as conn:
        with unbounded(conn):
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
            conn.execute(text("SELECT pg_sleep(3)"))  # longer than statement_timeout
            conn.rollback()
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "2500ms"
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "2s"


@pytest.mark.postgres
def test_a_worker_creating_the_schema_waits_for_another_past_the_lock_timeout(
    engine: Engine, fresh_database: str
) -> None:
    # Another process holds the migration lock for longer than lock_timeout and the client's
    # round-trip limit: the schema is still created once it lets go, never given up on.
    with psycopg.connect(fresh_database, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
        releasing = threading.Timer(
            LIMITS.round_trip + 0.5,
            lambda: other.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_KEY,)),
        )
        releasing.start()
        try:
            status = upgrade(engine, only_if_empty=True)
        finally:
            releasing.join()

    assert status.state is SchemaState.CURRENT


def test_sqlite_waits_for_the_writer_lock_a_few_seconds_at_most(tmp_path: Path) -> None:
    engine = create_store_engine(
        f"sqlite:///{tmp_path / 'shop.db'}", DatabaseTimeouts(sqlite_busy=1.0)
    )
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1000
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.commit()
        with engine.connect() as writer, engine.connect() as other:
            writer.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock
            started = time.monotonic()
            with pytest.raises(OperationalError, match="locked"):
                other.execute(text("INSERT INTO t VALUES (2)"))
            assert 0.8 < elapsed(started) < 2.0
    finally:
        engine.dispose()


def test_timeouts_come_from_flask_config_keys() -> None:
    limits = DatabaseTimeouts.from_config(
        {"DB_CONNECT_SECONDS": 3, "DB_STATEMENT_SECONDS": "4.5", "OTHER": 1}
    )
    assert (limits.connect, limits.statement, limits.lock) == (3.0, 4.5, 2.0)
    assert limits.round_trip == 5.0
    assert limits.longest_wait == limits.pool + 5.0


def test_the_health_probe_answers_within_its_budget_with_one_ping_in_flight() -> None:
    release = threading.Event()
    calls: list[float] = []

    def hanging_ping() -> bool:
        calls.append(time.monotonic())
        return release.wait(10)

    probe = HealthProbe(hanging_ping, budget_seconds=0.3)
    results: list[tuple[bool, float]] = []

    def check() -> None:
        started = time.monotonic()
        results.append((probe.check(), time.monotonic() - started))

    checkers = [threading.Thread(target=check) for _ in range(5)]
    for thread in checkers:
        thread.start()
    for thread in checkers:
        thread.join(5)

    assert len(calls) == 1  # one ping in flight, whoever asks
    assert [ok for ok, _ in results] == [False] * 5
    assert all(seconds < 0.6 for _, seconds in results), results
    release.set()  # the hung ping answers at last
    deadline = time.monotonic() + 5
    while not probe.check():
        assert time.monotonic() < deadline
    assert probe.check()  # a new ping each time none is in flight
    assert len(calls) >= 2


def test_the_gate_waits_for_an_upgrade_in_progress_instead_of_refusing_its_halfway_schema(
    tmp_path: Path,
) -> None:
    # Another worker is creating the schema: SQLite commits each revision on its own, so the
    # database reads "at 0001" until it is done. The gate must not close on that.
    database = tmp_path / "shop.db"
    engine = create_store_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.commit()
        with (tmp_path / "shop.db.migrate.lock").open("a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # the other worker's migration lock
            # No recheck in this test: only the first check, still waiting, can open the gate.
            gate = SchemaGate(engine, start_up_seconds=0.5, recheck_seconds=600)
            assert not gate.ready()  # start-up goes on; the check waits in the background
            assert "db upgrade" not in gate.line
            with engine.connect() as conn:
                command.upgrade(alembic_config(conn), "head")
                conn.commit()
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        deadline = time.monotonic() + 5
        while not gate.ready():  # the same check reads again once the lock is free
            assert time.monotonic() < deadline, gate.line
            time.sleep(0.05)
        assert gate.line.startswith("database schema is current")
    finally:
        engine.dispose()
