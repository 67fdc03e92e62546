"""gunicorn settings read from the project folder (`gunicorn 'app:create_app()'` finds this file).

Command-line flags still win. Why these values:
- timeout: a sync worker is killed after `timeout` seconds on one request. The return URL may wait
  for Amazon twice (Get + Complete, each with bounded retries: about 17 s at worst) plus up to
  2 s for a concurrent request's young claim, so 30 s (gunicorn's default) could kill a worker
  while money is moving. The claim's 20 s lease is renewed by its holder while it works
  (storefront/db/leases.py), so a slow winner is never overtaken.
- keepalive: how long a browser's idle connection is kept open for its next click (gunicorn's
  default is 2 s). With gthread an idle connection waits in the poller, not on a thread. The
  server closing one may cross a request just sent on it; browsers resend such a request.
- control_socket_disable: gunicorn 27 otherwise shares one control socket per user
  (~/.gunicorn/gunicorn.ctl) between every instance on the machine.
- logger_class: the access log (`--access-logfile`) would record every return URL with its
  `ref` and `amazonCheckoutSessionId`, and every result page with its unguessable reference
  (docs/contract.md); MaskingLogger writes `***` in their place.
- on_starting / child_exit / on_exit: Prometheus multiprocess mode, so `GET /metrics` adds up
  every worker's counts (storefront/metrics.py). `PROMETHEUS_MULTIPROC_DIR` names the folder for
  the workers' files; unset, a fresh one is made per start and removed at exit. Not with
  `--preload`: prometheus_client picks its mode when first imported, which must be after this.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

# Query parameters whose values identify a buyer's checkout (docs/contract.md: the return URL,
# the saved-wallet form, staff refunds). Matched after `?`, `&` or `;`, or at the start of a bare
# query string, in any letter case, the way a request line, a Referer or QUERY_STRING holds them.
_SECRET_PARAMETER = re.compile(
    r"(?P<name>(?:^|[?&;])(?:amazonCheckoutSessionId|ref|request_id|charge_permission_id)=)"
    r"[^&;#\s\"]*",
    re.IGNORECASE,
)
# The success page's path is its reference: `/checkout/result/<ref>`.
_RESULT_PATH = re.compile(r"(?P<name>/checkout/result/)[^/?#\s\"]+")
MASK = "***"


def mask_secrets(text: str) -> str:
    """`text` with the values of the checkout's identifying parameters replaced by `***`."""
    text = _SECRET_PARAMETER.sub(rf"\g<name>{MASK}", text)
    return _RESULT_PATH.sub(rf"\g<name>{MASK}", text)


class MaskingLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger whose access-log atoms never hold a checkout's identifiers.

    Every string atom is masked, not only the request line (`r`), path (`U`) and query (`q`):
    the Referer (`f`, `{referer}i`), the environ (`{raw_uri}e`, `{query_string}e`) and a
    redirect's Location (`{location}o`) can carry the same URL.
    """

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {
            key: mask_secrets(value) if isinstance(value, str) else value
            for key, value in atoms.items()
        }


timeout = 75
keepalive = 5
control_socket_disable = True
logger_class = MaskingLogger


_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_made_metrics_dir: list[str] = []


def on_starting(server: Any) -> None:
    """Give the workers an empty metrics folder: old files would add a past run's counts."""
    directory = os.environ.get(_METRICS_DIR)
    if directory:
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="storefront-metrics-")
        _made_metrics_dir.append(directory)
        os.environ[_METRICS_DIR] = directory


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges go; its counters stay in the totals (prometheus_client)."""
    # Imported here: prometheus_client picks its mode on import, so never before on_starting.
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    for directory in _made_metrics_dir:
        shutil.rmtree(directory, ignore_errors=True)
