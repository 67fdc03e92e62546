"""Outages for real: a PostgreSQL server of this package's own that tests stop, start again on
the same port and freeze (SIGSTOP), the standalone simulator, and the app under gunicorn."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.postgres import (
    PostgresServer,
    PostgresUnavailableError,
    _run_as,
    find_bin_dir,
    free_port,
)
from tests.support.servers import (
    KeyPair,
    ServerProcess,
    app_environment,
    child_pids,
    generate_key_pair,
    start_server,
    start_simulator,
)


@dataclass
class OutagePostgres(PostgresServer):
    """A server that keeps its port across a stop and a start, and can be frozen."""

    def _pick_port(self) -> None:
        # The app's DATABASE_URL must stay valid across a stop and a start: keep the first port.
        self.port = self.port or free_port()

    def start_again(self) -> None:
        """Start the stopped server on its old port and wait until it answers."""
        assert self.process is None, "the server is running"
        self._launch()
        if not self._wait_ready():
            raise PostgresUnavailableError(f"PostgreSQL did not start again:\n{self._log_tail()}")

    def _signal_all(self, signum: signal.Signals) -> None:
        # Each backend calls setsid(): signalling the postmaster's process group misses them.
        assert self.process is not None
        for pid in [self.process.pid, *child_pids(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: the kernel still accepts and ACKs TCP."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            if self.process is None:
                self.start_again()


@pytest.fixture(scope="package")
def outage_postgres() -> Iterator[OutagePostgres]:
    """This package's own server: the tests stop and freeze it, so it is shared with no one."""
    base_dir = Path(tempfile.mkdtemp(prefix="pytest-outage-postgres-"))
    try:
        server = OutagePostgres(bin_dir=find_bin_dir(), base_dir=base_dir, user=_run_as())
        server.start()
    except PostgresUnavailableError as exc:
        shutil.rmtree(base_dir, ignore_errors=True)
        pytest.fail(f"PostgreSQL is required by the outage tests and could not start: {exc}")
    try:
        yield server
    finally:
        if server.process is not None:
            server.thaw()
        server.stop()
        shutil.rmtree(base_dir, ignore_errors=True)


@pytest.fixture
def fresh_database(outage_postgres: OutagePostgres, request: pytest.FixtureRequest) -> str:
    """A new empty database on the outage server, for one test."""
    return outage_postgres.create_database(request.node.name[:30])


@pytest.fixture(scope="package")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outages")


@pytest.fixture(scope="package")
def merchant_keys(work_dir: Path) -> KeyPair:
    return generate_key_pair(work_dir / "keys")


@pytest.fixture(scope="package")
def simulator(merchant_keys: KeyPair, work_dir: Path) -> Iterator[ServerProcess]:
    server = start_simulator(keys=[merchant_keys], log_dir=work_dir / "logs")
    yield server
    server.stop()


StartShop = Callable[..., ServerProcess]


@pytest.fixture
def start_shop(
    merchant_keys: KeyPair, simulator: ServerProcess, work_dir: Path
) -> Iterator[StartShop]:
    """`start_shop(database_url, workers=, threads=)`: gunicorn serving tests.outages.served_app."""
    started: list[ServerProcess] = []

    def start(database_url: str, *, workers: int = 1, threads: int = 4) -> ServerProcess:
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.outages.served_app:create()",
            "--bind",
            "127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--graceful-timeout",
            "3",
            "--timeout",
            "60",
            "--no-control-socket",
        ]
        env = app_environment(
            keys=merchant_keys, simulator_url=simulator.base_url, database_url=database_url
        )
        server = start_server(
            f"shop-{len(started)}",
            argv_template=argv,
            env=env,
            log_dir=work_dir / "logs",
            health_path="/healthz",
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def worker_pids(server: ServerProcess) -> list[int]:
    """gunicorn's workers: the master's children."""
    return child_pids(server.process.pid)


def wait_for(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = ""
) -> float:
    """Poll `condition` until it holds; the seconds it took (the test fails after `timeout`)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(interval)
    return time.monotonic() - started


def healthy(base_url: str) -> bool:
    try:
        return requests.get(base_url + "/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False
