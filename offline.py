"""Offline mode: a development key pair, a secret key and one shared embedded simulator.

Several gunicorn workers each call `create_app()`; they must end up talking to the same
simulator (checkout sessions live in its memory). A file lock under `instance/` serialises
start-up, a port file records where the simulator listens, and a later process reuses it when
`/_simulator/health` answers, or takes over (on the same port) when its owner has died.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay.simulator import Simulator, serve_in_thread

__all__ = [
    "DEV_KEY_ID",
    "OfflineSimulator",
    "ensure_dev_key",
    "ensure_secret_key",
    "ensure_simulator",
]

logger = logging.getLogger(__name__)

DEV_KEY_ID = "SANDBOX-SIMULATOR-DEV"
_PRIVATE_KEY_FILE = "amazonpay-dev-private.pem"
_SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
_LOCK_FILE = "simulator.lock"
_PORT_FILE = "simulator.port"


@contextmanager
def _instance_lock(instance: Path) -> Iterator[None]:
    """An exclusive lock across processes for start-up work under `instance/`."""
    instance.mkdir(parents=True, exist_ok=True)
    with (instance / _LOCK_FILE).open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable only by us, atomically (rename), so no reader sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def ensure_dev_key(instance: Path) -> rsa.RSAPrivateKey:
    """The development private key under instance/, generated on first use."""
    path = instance / _PRIVATE_KEY_FILE
    with _instance_lock(instance):
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_private(path, pem)
            logger.info("generated the development Amazon Pay key %s", path)
        pem = path.read_bytes()
    loaded = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return loaded


def ensure_secret_key(instance: Path) -> str:
    """The Flask secret for the offline demo, generated once and kept under instance/."""
    path = instance / _SECRET_KEY_FILE
    with _instance_lock(instance):
        if not path.exists():
            _write_private(path, secrets.token_hex(32).encode("ascii"))
        return path.read_text("ascii").strip()


@dataclass
class OfflineSimulator:
    """Where the shared simulator listens; `handle` is set in the process that runs it."""

    base_url: str
    handle: Any | None = None

    def shutdown(self) -> None:
        if self.handle is not None:
            self.handle.shutdown()
            self.handle = None


def _healthy(base_url: str) -> bool:
    try:
        response = requests.get(f"{base_url}/_simulator/health", timeout=2)
    except requests.RequestException:
        return False
    return response.status_code == 200


def ensure_simulator(
    instance: Path, public_key_id: str, private_key: rsa.RSAPrivateKey, port: int = 0
) -> OfflineSimulator:
    """Reuse the simulator another process of this instance started, or start one here."""
    port_file = instance / _PORT_FILE
    with _instance_lock(instance):
        recorded: int | None = None
        try:
            recorded = int(port_file.read_text("ascii").strip())
        except (OSError, ValueError):
            recorded = None
        if recorded:
            base_url = f"http://127.0.0.1:{recorded}"
            if _healthy(base_url):
                return OfflineSimulator(base_url)
        simulator = Simulator(public_keys={public_key_id: private_key.public_key()})
        handle = None
        if recorded and not port:
            try:  # take over on the same port so pages and other workers keep working
                handle = serve_in_thread(simulator, "127.0.0.1", recorded)
            except OSError:
                handle = None
        if handle is None:
            handle = serve_in_thread(simulator, "127.0.0.1", port)
        port_file.write_text(str(handle.port), "ascii")
        logger.info("embedded Amazon Pay simulator at %s", handle.base_url)
        return OfflineSimulator(str(handle.base_url), handle)
