"""Real servers in subprocesses for tests and benchmarks: gunicorn running the app, the standalone
simulator. Each runs in its own process group, is waited for with a bounded health check, and is
killed as a group on stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.postgres import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# Variables the app reads; a test process must not inherit the developer's values.
APP_VARIABLES = (
    "AMAZON_PAY_PUBLIC_KEY_ID",
    "AMAZON_PAY_PRIVATE_KEY",
    "AMAZON_PAY_MERCHANT_ID",
    "AMAZON_PAY_STORE_ID",
    "AMAZON_PAY_REGION",
    "AMAZON_PAY_SANDBOX",
    "AMAZON_PAY_ENDPOINT",
    "AMAZON_PAY_CHECKOUT_JS_URL",
    "AMAZON_PAY_ALGORITHM",
    "DATABASE_URL",
    "SECRET_KEY",
    "PUBLIC_URL",
    "AMAZON_PAY_PAYMENT_INTENT",
    "LOG_FORMAT",
    "ADMIN_PASSWORD",
)


class ServerStartError(RuntimeError):
    """A server process did not become healthy in time; the message carries its log tail."""


@dataclass(frozen=True)
class KeyPair:
    key_id: str
    private_key_path: Path
    public_key_path: Path


def generate_key_pair(
    directory: Path, key_id: str = "SANDBOX-AETESTKEY0000000000000000"
) -> KeyPair:
    """A fresh RSA-2048 key pair as PEM files (the private key in PKCS#8)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path = directory / "private.pem"
    public_path = directory / "public.pem"
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(key_id=key_id, private_key_path=private_path, public_key_path=public_path)


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """os.environ without the app's own variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in APP_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def child_pids(pid: int) -> list[int]:
    """Direct and indirect children of `pid`, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class ServerProcess:
    """A running server subprocess (leader of its own process group)."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def pids(self) -> list[int]:
        """The process and all its children (gunicorn: master and workers)."""
        return [self.process.pid, *child_pids(self.process.pid)]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        # Whatever is left in the group (a worker stuck in a request) is killed outright.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)


def _wait_healthy(server: ServerProcess, health_path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if requests.get(server.base_url + health_path, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False


def start_server(
    name: str,
    *,
    argv_template: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    health_path: str,
    cwd: Path = REPO_ROOT,
    timeout: float = START_TIMEOUT,
    port: int | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> ServerProcess:
    """Start `argv_template` (with "{port}" filled in, there and in `env`'s values) and wait
    until `health_path` answers 200.

    A free port is picked for each attempt; another process may take it in between, so a server
    that dies at start-up is retried twice before the failure is reported with the log tail.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    last_tail = ""
    for _attempt in range(3):
        chosen = port or free_port()
        argv = [part.replace("{port}", str(chosen)) for part in argv_template]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env={key: value.replace("{port}", str(chosen)) for key, value in env.items()},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = ServerProcess(
            name, process, f"http://127.0.0.1:{chosen}", log_path, stop_signal=stop_signal
        )
        if _wait_healthy(server, health_path, timeout):
            return server
        server.stop()
        last_tail = server.log_tail()
        if port is not None:
            break
    raise ServerStartError(
        f"{name} did not answer {health_path} with 200 within {timeout:.0f}s: "
        f"{' '.join(argv_template)}\n--- log tail ---\n{last_tail}"
    )


def start_gunicorn(
    *,
    env: Mapping[str, str],
    log_dir: Path,
    name: str = "gunicorn",
    workers: int = 2,
    threads: int = 4,
    extra_args: Sequence[str] = (),
) -> ServerProcess:
    """`gunicorn 'app:create_app()'` on 127.0.0.1, waited for through /healthz."""
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "app:create_app()",
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
        "--no-control-socket",  # gunicorn 27 default: one socket under $HOME shared by all
        *extra_args,
    ]
    return start_server(name, argv_template=argv, env=env, log_dir=log_dir, health_path="/healthz")


def start_simulator(
    *,
    keys: Sequence[KeyPair],
    log_dir: Path,
    name: str = "simulator",
    extra_args: Sequence[str] = (),
) -> ServerProcess:
    """The standalone simulator, `python -m amazonpay.simulator`, trusting `keys`."""
    argv = [sys.executable, "-m", "amazonpay.simulator", "--port", "{port}"]
    for key in keys:
        argv += ["--public-key", f"{key.key_id}={key.public_key_path}"]
    argv += list(extra_args)
    return start_server(
        name,
        argv_template=argv,
        env=clean_environment({}),
        log_dir=log_dir,
        health_path="/checkout.js",
    )


def app_environment(
    *,
    keys: KeyPair,
    simulator_url: str,
    database_url: str,
    secret_key: str = "test-secret-key-0123456789abcdef",  # noqa: S107 - a test value
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for an app process with credentials, pointed at a standalone simulator.

    Its PUBLIC_URL is the loopback address `start_server` picks ("{port}" is filled in there).
    """
    return clean_environment(
        {
            "AMAZON_PAY_PUBLIC_KEY_ID": keys.key_id,
            "AMAZON_PAY_PRIVATE_KEY": str(keys.private_key_path),
            "AMAZON_PAY_ENDPOINT": simulator_url,
            "AMAZON_PAY_CHECKOUT_JS_URL": simulator_url + "/checkout.js",
            "DATABASE_URL": database_url,
            "SECRET_KEY": secret_key,
            "PUBLIC_URL": "http://127.0.0.1:{port}",
            **(extra or {}),
        }
    )


@contextlib.contextmanager
def stopping(*servers: ServerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


@dataclass(frozen=True)
class Deployment:
    """What the buyer and the test talk to: one or more app instances and the simulator."""

    name: str
    shop_urls: tuple[str, ...]
    simulator_url: str
    servers: tuple[ServerProcess, ...]

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log_tail(3000)}" for s in self.servers)
