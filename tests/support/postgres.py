"""A throw-away PostgreSQL server for the test session, started from the Debian binaries.

One server per session (initdb once, ~2 s); each test module gets its own fresh database.
Durability is switched off: the data lives in a temp dir that is deleted at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class PostgresUnavailableError(RuntimeError):
    """The server could not be found or started; the message says what to install or check."""


def find_bin_dir() -> Path:
    """Where initdb and postgres live: $PG_BIN_DIR, PATH, or the newest Debian install."""
    explicit = os.environ.get("PG_BIN_DIR")
    candidates: list[Path] = [Path(explicit)] if explicit else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(re.sub(r"\D", "", p.split("/")[4]) or 0),
        reverse=True,
    )
    candidates.extend(Path(p) for p in debian)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise PostgresUnavailableError(
        "PostgreSQL server binaries (initdb, postgres) not found in $PG_BIN_DIR, PATH or "
        "/usr/lib/postgresql/*/bin. Install them: apt-get install postgresql-15 "
        "(or run `make test`, which does it)."
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """initdb refuses to run as root: then the server runs as the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailableError(
            "running as root but there is no `postgres` user to run the server as"
        ) from None
    return "postgres"


@dataclass
class PostgresServer:
    """A running server: `url(dbname)` for clients, `create_database()` for a fresh database."""

    bin_dir: Path
    base_dir: Path
    user: str | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _created: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _popen_user(self) -> dict[str, object]:
        if self.user is None:
            return {}
        entry = pwd.getpwnam(self.user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        self.data_dir.mkdir()
        self.socket_dir.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.base_dir, self.data_dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            timeout=START_TIMEOUT,
            check=False,
            cwd=self.base_dir,
            **self._popen_user(),  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )

    def _pick_port(self) -> None:
        """A free port per launch (a start retries on another if one is taken meanwhile)."""
        self.port = free_port()

    def _launch(self) -> None:
        self._pick_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.socket_dir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.base_dir,
            start_new_session=True,
            **self._popen_user(),  # type: ignore[arg-type]
        )
        log.close()

    def start(self) -> None:
        self._initdb()
        for _attempt in range(3):  # the port was free when picked; another process may grab it
            self._launch()
            if self._wait_ready():
                return
            self._terminate()
        raise PostgresUnavailableError(f"PostgreSQL did not start; log:\n{self._log_tail()}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        name = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40] + f"_{len(self._created)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # SIGINT is PostgreSQL's "fast shutdown": roll back, disconnect clients, exit.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        self._terminate()


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a server in a temp dir, yield it, then stop it and delete its data."""
    bin_dir = find_bin_dir()
    base_dir = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
    server = PostgresServer(bin_dir=bin_dir, base_dir=base_dir, user=_run_as())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base_dir, ignore_errors=True)
