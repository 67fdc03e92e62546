"""Playwright with Debian's Chromium (Playwright cannot download its own browsers here)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> Path:
    """$CHROMIUM_PATH, /usr/bin/chromium, or chromium on PATH; raises with an install hint."""
    candidates = [os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise FileNotFoundError(
        "Chromium not found at $CHROMIUM_PATH, /usr/bin/chromium or on PATH: "
        "apt-get install chromium (or run `make test`, which does it)"
    )


# Collects Content-Security-Policy violations the page reports, even those not logged to console,
# in window.__cspViolations; also hands each to window.__reportCspViolation when a test exposed it
# (Playwright's expose_binding survives navigations, the array does not).
CSP_LISTENER_SCRIPT = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const text = e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' +
               (e.sourceFile || '') + ':' + (e.lineNumber || '');
  window.__cspViolations.push(text);
  if (typeof window.__reportCspViolation === 'function') {
    window.__reportCspViolation(location.href + ' ' + text);
  }
});
"""
