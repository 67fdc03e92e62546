"""The soak's deployment: one PostgreSQL, one standalone simulator, two gunicorn instances of the
shop, a load-balancer-like router between them, the SIGKILL and restart of one, and the shop's
own CLI (`flask --app app db upgrade`, `flask --app app reconcile`) run with the same environment.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.postgres import PostgresServer, running_postgres
from tests.support.servers import (
    REPO_ROOT,
    KeyPair,
    ServerProcess,
    app_environment,
    generate_key_pair,
    start_server,
    start_simulator,
)

ADMIN_PASSWORD = "soak-staff-password"  # noqa: S105 - the soak's own throw-away console
WORKERS = 2
THREADS = 4
CLI_TIMEOUT = 120.0
# How long an instance keeps a buyer's idle connection (gunicorn.conf.py's value, given here so
# the check knows it: a request crossing that close is resent by the browser, bench/soak_buyers).
KEEPALIVE_SECONDS = 5


def gunicorn_argv() -> list[str]:
    """`gunicorn 'app:create_app()'` as tests/support/servers.py `start_gunicorn` runs it."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "app:create_app()",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--threads",
        str(THREADS),
        "--graceful-timeout",
        "3",
        "--timeout",
        "60",
        "--keep-alive",
        str(KEEPALIVE_SECONDS),
        "--no-control-socket",
        "--access-logfile",
        "-",
    ]


@dataclass
class Instance:
    """One shop instance behind the router; `up` is what the load balancer believes."""

    name: str
    server: ServerProcess
    up: bool = True
    kills: list[float] = field(default_factory=list)  # monotonic times of SIGKILLs
    restarts: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.base_url


class Router:
    """Sends each request to one instance that is up, at random, like a load balancer would.

    The shop's session cookie is signed with the one SECRET_KEY both instances share, and its
    host check ignores the port, so any instance can serve any request of any buyer.
    """

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances
        self._lock = threading.Lock()
        self.returns_in_flight: Counter[str] = Counter()  # per instance name

    def returning(self, instance: Instance, delta: int) -> None:
        with self._lock:
            self.returns_in_flight[instance.name] += delta

    def busy_victim(self, wait: float) -> Instance | None:
        """An instance with a return in flight, waiting up to `wait` seconds for one: a kill
        then cuts a worker off between Amazon's answer and the shop's record of it."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                for instance in self.instances:
                    if instance.up and self.returns_in_flight[instance.name] > 0:
                        return instance
            time.sleep(0.01)
        return None

    def pick(self, rng: random.Random, avoid: str | None = None) -> Instance:
        with self._lock:
            up = [i for i in self.instances if i.up and i.name != avoid]
            if not up:
                up = [i for i in self.instances if i.up]
            return rng.choice(up or self.instances)

    def by_name(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def mark(self, instance: Instance, *, up: bool) -> None:
        with self._lock:
            instance.up = up


@dataclass
class SoakDeployment:
    """Everything the soak runs, and how to reach it."""

    work_dir: Path
    keys: KeyPair
    postgres: PostgresServer
    database_url: str
    simulator: ServerProcess
    router: Router
    log_dir: Path

    def app_env(self, port: int | None) -> dict[str, str]:
        """The instances' environment; PUBLIC_URL names `port` (None: no port, for the CLI)."""
        env = app_environment(
            keys=self.keys,
            simulator_url=self.simulator.base_url,
            database_url=self.database_url,
            # The merchant console is on: the soak's staff refund from it.
            extra={"ADMIN_PASSWORD": ADMIN_PASSWORD},
            # The claim lease decides how long a killed worker's claim blocks its checkout;
            # the shop's default (20 s) is kept: the soak measures the product as shipped.
        )
        fill = (":{port}", "") if port is None else ("{port}", str(port))
        return {key: value.replace(*fill) for key, value in env.items()}

    def flask(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`flask --app app ARGS` with the instances' environment (it serves no request)."""
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *args],
            cwd=REPO_ROOT,
            env=self.app_env(None),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def kill(self, instance: Instance) -> list[int]:
        """SIGKILL the instance's whole process group (master and workers), no warning."""
        pids = instance.server.pids()
        self.router.mark(instance, up=False)
        instance.kills.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(instance.server.process.pid, signal.SIGKILL)
        instance.server.process.wait(timeout=10)
        return pids

    def restart(self, instance: Instance) -> None:
        """Start the instance again on its own port (the balancer's backend address)."""
        port = instance.server.port
        instance.server = start_server(
            instance.name,
            argv_template=gunicorn_argv(),
            env=self.app_env(port),
            log_dir=self.log_dir,
            health_path="/healthz",
            port=port,
        )
        instance.restarts.append(time.monotonic())
        self.router.mark(instance, up=True)


@contextlib.contextmanager
def deployed(work_dir: Path) -> Iterator[SoakDeployment]:
    """Start PostgreSQL, the simulator and two shop instances; stop them all afterwards."""
    log_dir = work_dir / "logs"
    keys = generate_key_pair(work_dir / "keys")
    with running_postgres() as postgres:
        database_url = postgres.create_database("soak")
        simulator = start_simulator(keys=[keys], log_dir=log_dir)
        deployment = SoakDeployment(
            work_dir=work_dir,
            keys=keys,
            postgres=postgres,
            database_url=database_url,
            simulator=simulator,
            router=Router([]),
            log_dir=log_dir,
        )
        try:
            # One schema step before any instance serves, as the README's upgrade step says.
            upgrade = deployment.flask("db", "upgrade")
            if upgrade.returncode != 0:
                raise RuntimeError(f"flask db upgrade failed:\n{upgrade.stdout}{upgrade.stderr}")
            for name in ("shop-a", "shop-b"):
                server = start_server(
                    name,
                    argv_template=gunicorn_argv(),
                    env=deployment.app_env(None) | {"PUBLIC_URL": "http://127.0.0.1:{port}"},
                    log_dir=log_dir,
                    health_path="/healthz",
                )
                deployment.router.instances.append(Instance(name, server))
            yield deployment
        finally:
            for instance in deployment.router.instances:
                instance.server.stop()
            simulator.stop()
