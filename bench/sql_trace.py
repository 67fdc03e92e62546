"""The SQL one happy saved-wallet charge issues: each statement and each pool checkout, in order.

    python bench/sql_trace.py [--stale]

Same setup as bench/saved_wallet.py (its helpers); prints what the measured POST sent to the
database, so a change to the store can be checked statement by statement.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amazonpay.simulator import Simulator
from amazonpay.simulator.server import make_keepalive_server
from app import create_app
from bench.saved_wallet import CSRF, PAY_FORM, TimedSimulator, save_wallet
from tests.support.servers import APP_VARIABLES, generate_key_pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stale", action="store_true", help="clear the wallet's freshness first")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        keys = generate_key_pair(work / "keys")
        simulator = Simulator(public_keys={keys.key_id: keys.public_key_path.read_bytes()})
        timed = TimedSimulator(simulator.wsgi_app)
        server = make_keepalive_server("127.0.0.1", 0, timed)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        simulator_url = f"http://127.0.0.1:{server.server_address[1]}"
        config: dict[str, Any] = dict.fromkeys(APP_VARIABLES, "")
        config.update(
            {
                "AMAZON_PAY_PUBLIC_KEY_ID": keys.key_id,
                "AMAZON_PAY_PRIVATE_KEY": str(keys.private_key_path),
                "AMAZON_PAY_ENDPOINT": simulator_url,
                "AMAZON_PAY_CHECKOUT_JS_URL": f"{simulator_url}/checkout.js",
                "DATABASE_URL": f"sqlite:///{work / 'shop.db'}",
                "SECRET_KEY": "bench-secret-key-0123456789abcdef",
                "PUBLIC_URL": "http://localhost",
                "INSTANCE_PATH": str(work / "instance"),
            }
        )
        app = create_app(config)
        client = app.test_client()
        store = app.extensions["shop"].store
        permission_id = save_wallet(client, simulator_url)
        requests.post(
            f"{simulator_url}/_simulator/charge-permissions/{permission_id}/monthly-limit",
            json={"amount": "1000000.00", "currencyCode": "USD"},
            timeout=10,
        ).raise_for_status()
        log: list[str] = []
        recording = False

        def statement(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
            if recording:
                log.append("  " + " ".join(sql.split())[:150])

        def checkout(*_args: Any) -> None:
            if recording:
                log.append("CHECKOUT")

        event.listen(store.engine, "before_cursor_execute", statement)
        event.listen(store.engine.pool, "checkout", checkout)
        for _ in range(2):
            index = client.get("/").get_data(as_text=True)
            found = CSRF.search(index)
            assert found is not None
            csrf = found.group(1)
            client.post("/cart/add", data={"product_id": "mug", "csrf_token": csrf})
            page = client.get("/checkout").get_data(as_text=True)
            form = PAY_FORM.search(page)
            assert form is not None
            ref, permission = form.groups()
            if args.stale:
                with store.engine.begin() as conn:
                    store.wallets.mark_stale(conn, permission)
            log.clear()
            recording = True
            answer = client.post(
                "/checkout/saved",
                data={"csrf_token": csrf, "ref": ref, "charge_permission_id": permission},
            )
            recording = False
            assert answer.status_code == 303
            client.post("/cart/clear", data={"csrf_token": csrf})
        app.extensions["shop"].close()
        server.shutdown()
    print("\n".join(log))
    print(
        f"{sum(1 for line in log if line != 'CHECKOUT')} statements, "
        f"{log.count('CHECKOUT')} checkouts"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
