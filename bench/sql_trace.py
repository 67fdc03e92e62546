"""The SQL one happy saved-wallet charge issues: each statement and each pool checkout, in order.

    python bench/sql_trace.py [--stale]

Same setup as bench/saved_wallet.py (its helpers); prints what the measured POST sent to the
database, so a change to the store can be checked statement by statement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.saved_wallet import CSRF, PAY_FORM, shop_with_a_saved_wallet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stale", action="store_true", help="clear the wallet's freshness first")
    args = parser.parse_args(argv)
    with shop_with_a_saved_wallet() as (app, client, _timed):
        store = app.extensions["shop"].store
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
    print("\n".join(log))
    print(
        f"{sum(1 for line in log if line != 'CHECKOUT')} statements, "
        f"{log.count('CHECKOUT')} checkouts"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
