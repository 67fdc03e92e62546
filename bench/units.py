"""The benches' speed reference, one RSA-2048 PSS-SHA256 signature measured in the same run, and
the figure (`3.86 ms (12.9 sig)`) and table formats every bench prints, so figures transfer
between machines that differ severalfold in speed."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

COLUMNS = ("metric", "value", "target", "ok")

# The app's default algorithm, AMZN-PAY-RSASSA-PSS-V2 (docs/amazon-pay-api.md section 1.1), and a
# message as long as its string to sign (designation, newline, 64 hex digits; section 1.7).
SALT_LENGTH = 32
MESSAGE = b"AMZN-PAY-RSASSA-PSS-V2\n" + b"0123456789abcdef" * 4


@dataclass(frozen=True)
class SignatureReference:
    """CPU seconds of one signature, one value per measured batch; the reference is the median."""

    batch_seconds: tuple[float, ...]
    per_batch: int

    @property
    def seconds(self) -> float:
        return statistics.median(self.batch_seconds)

    def sigs(self, seconds: float) -> float:
        """`seconds` as a multiple of one signature."""
        return seconds / self.seconds

    def figure(self, seconds: float) -> str:
        """`3.86 ms (12.9 sig)`."""
        return format_figure(seconds, self.seconds)

    def merged(self, other: SignatureReference) -> SignatureReference:
        """Both measurements' batches (say, one before and one after the bench's phases)."""
        if other.per_batch != self.per_batch:
            raise ValueError("merge measurements of the same batch size")
        return SignatureReference(self.batch_seconds + other.batch_seconds, self.per_batch)

    def row(self) -> tuple[str, str, str, str]:
        """The table row every bench ends with: what `1 sig` was in this run, and its spread."""
        return (
            "1 sig: one RSA-2048 PSS-SHA256 signature",
            f"{format_ms(self.seconds)} CPU (median of {len(self.batch_seconds)} batches of"
            f" {self.per_batch}; batches {format_ms(min(self.batch_seconds))}"
            f" - {format_ms(max(self.batch_seconds))})",
            "",
            "",
        )


def measure_signature(
    *,
    batches: int = 15,
    per_batch: int = 10,
    warmup: int = 20,
    key: rsa.RSAPrivateKey | None = None,
) -> SignatureReference:
    """Sign `MESSAGE` in `batches` batches of `per_batch` after `warmup` unmeasured signatures.

    Thread CPU time, not wall time: another process taking the core (the benches run servers
    beside themselves) must not inflate the unit. The cyclic GC is off while measuring, as a
    collection of the bench's own heap is not the machine's speed. The key and the padding are
    made once, like the app's client does with its key. Many short batches: on a shared virtual
    machine a neighbour's load comes and goes within a second, and the median rides it out.
    """
    if batches < 1 or per_batch < 1:
        raise ValueError("measure at least one batch of at least one signature")
    private_key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if private_key.key_size != 2048:
        raise ValueError("the reference is an RSA-2048 signature")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_LENGTH)
    sha256 = hashes.SHA256()
    sign = private_key.sign
    times: list[float] = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(warmup):
            sign(MESSAGE, pss, sha256)
        for _ in range(batches):
            started = time.thread_time_ns()
            for _ in range(per_batch):
                sign(MESSAGE, pss, sha256)
            times.append((time.thread_time_ns() - started) / 1e9 / per_batch)
    finally:
        if was_enabled:
            gc.enable()
    return SignatureReference(tuple(times), per_batch)


def format_ms(seconds: float) -> str:
    """Milliseconds, two decimals; three below 0.1 ms so small figures keep a digit."""
    milliseconds = seconds * 1000
    return f"{milliseconds:.3f} ms" if abs(milliseconds) < 0.1 else f"{milliseconds:.2f} ms"


def format_sig(ratio: float) -> str:
    """A multiple of one signature: `0.13 sig`, `12.9 sig`, `215 sig`."""
    size = abs(ratio)
    if size < 1:
        return f"{ratio:.2f} sig"
    if size < 100:
        return f"{ratio:.1f} sig"
    return f"{ratio:.0f} sig"


def format_figure(seconds: float, signature_seconds: float) -> str:
    """`3.86 ms (12.9 sig)`: the figure in ms and as a multiple of one signature."""
    if signature_seconds <= 0:
        raise ValueError("a signature takes some time")
    return f"{format_ms(seconds)} ({format_sig(seconds / signature_seconds)})"


def verdict(passed: bool) -> str:
    """The `ok` column."""
    return "yes" if passed else "NO"


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = COLUMNS) -> str:
    """Left-aligned columns under a header and a dashed rule; trailing blanks trimmed."""
    table = [tuple(header), *(tuple(row) for row in rows)]
    if any(len(row) != len(header) for row in table):
        raise ValueError(f"every row needs {len(header)} cells")
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    lines = [line(table[0]), line(["-" * w for w in widths]), *(line(r) for r in table[1:])]
    return "\n".join(text.rstrip() for text in lines)
