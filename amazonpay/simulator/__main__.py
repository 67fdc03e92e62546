"""Standalone runner: `python -m amazonpay.simulator --port 8443 --public-key KEYID=key.pem`.

Without `--public-key` it generates a development key pair and prints the key id and the private
key path, so a client can be pointed at it straight away.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amazonpay.simulator.app import Simulator
from amazonpay.simulator.server import make_keepalive_server


def _parse_key(value: str) -> tuple[str, bytes]:
    key_id, sep, path = value.partition("=")
    if not sep or not key_id or not path:
        raise argparse.ArgumentTypeError("use KEYID=path/to/public-or-private-key.pem")
    pem = Path(path).read_bytes()
    if b"PRIVATE KEY" in pem:
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise argparse.ArgumentTypeError(f"{path} is not an RSA key")
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return key_id, pem


def generate_dev_key(directory: Path) -> tuple[str, Path, bytes]:
    """A fresh RSA-2048 pair: key id, private key path (mode 0600) and public PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = "SANDBOX-SIMDEV" + secrets.token_hex(8).upper()
    private_path = directory / f"{key_id}.pem"
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key_id, private_path, public_pem


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m amazonpay.simulator", description="Offline Amazon Pay API v2 simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--public-key", action="append", type=_parse_key, default=[])
    parser.add_argument("--key-dir", type=Path, help="where to write a generated dev key")
    parser.add_argument("--throttling", action="store_true", help="sandbox throttling limits")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--no-control-api", action="store_true")
    parser.add_argument("--notify-url", help="where to POST IPN (SNS) notifications")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")

    keys = dict(args.public_key)
    if not keys:
        directory = args.key_dir or Path(tempfile.mkdtemp(prefix="amazon-pay-simulator-"))
        key_id, private_path, public_pem = generate_dev_key(directory)
        keys[key_id] = public_pem
        print(f"public key id: {key_id}")
        print(f"private key:   {private_path}")

    simulator = Simulator(
        public_keys=keys,
        throttling=args.throttling,
        control_api=not args.no_control_api,
        notify_url=args.notify_url,
    )
    ssl_context = (args.tls_cert, args.tls_key) if args.tls_cert else None
    # HTTP/1.1 keep-alive, a daemon thread per connection: pooled clients reuse connections.
    server = make_keepalive_server(
        args.host, args.port, simulator.wsgi_app, ssl_context=ssl_context
    )
    scheme = "https" if ssl_context else "http"
    simulator.base_url = f"{scheme}://{args.host}:{server.server_address[1]}"
    print(f"Amazon Pay simulator listening on {simulator.base_url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
