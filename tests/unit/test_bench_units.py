"""The benches' speed unit: figures read `3.86 ms (12.9 sig)` and tables line up the same way."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.units import (
    COLUMNS,
    SignatureReference,
    format_figure,
    format_ms,
    format_sig,
    format_table,
    measure_signature,
    verdict,
)


def test_a_figure_reads_in_ms_and_in_signatures() -> None:
    assert format_figure(0.00386, 0.0003) == "3.86 ms (12.9 sig)"
    assert format_figure(0.00013, 0.001) == "0.13 ms (0.13 sig)"
    assert format_figure(0.0645, 0.0003) == "64.50 ms (215 sig)"


def test_small_and_negative_figures_keep_their_digits_and_sign() -> None:
    assert format_ms(0.000058) == "0.058 ms"
    assert format_ms(-0.00039) == "-0.39 ms"
    assert format_sig(-1.1) == "-1.1 sig"
    assert format_figure(-0.00033, 0.00034) == "-0.33 ms (-0.97 sig)"


def test_a_figure_needs_a_measured_signature() -> None:
    with pytest.raises(ValueError, match="takes some time"):
        format_figure(0.001, 0.0)


def test_the_reference_is_the_median_batch_and_merges_two_measurements() -> None:
    before = SignatureReference((0.0004, 0.0002, 0.0003), per_batch=10)
    after = SignatureReference((0.0005, 0.0006), per_batch=10)
    assert before.seconds == pytest.approx(0.0003)
    assert before.figure(0.0009) == "0.90 ms (3.0 sig)"
    merged = before.merged(after)
    assert merged.batch_seconds == (0.0004, 0.0002, 0.0003, 0.0005, 0.0006)
    assert merged.seconds == pytest.approx(0.0004)
    with pytest.raises(ValueError, match="same batch size"):
        before.merged(SignatureReference((0.0003,), per_batch=20))


def test_the_reference_row_says_what_one_sig_was_in_this_run() -> None:
    reference = SignatureReference((0.00031, 0.00025, 0.00042), per_batch=10)
    assert reference.row() == (
        "1 sig: one RSA-2048 PSS-SHA256 signature",
        "0.31 ms CPU (median of 3 batches of 10; batches 0.25 ms - 0.42 ms)",
        "",
        "",
    )


def test_measuring_gives_one_positive_figure_per_batch(private_key: rsa.RSAPrivateKey) -> None:
    reference = measure_signature(batches=3, per_batch=2, warmup=1, key=private_key)
    assert len(reference.batch_seconds) == 3
    assert reference.per_batch == 2
    assert all(seconds > 0 for seconds in reference.batch_seconds)


def test_measuring_needs_a_batch_of_a_signature(private_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="at least one"):
        measure_signature(batches=0, key=private_key)
    with pytest.raises(ValueError, match="at least one"):
        measure_signature(per_batch=0, key=private_key)


def test_a_table_aligns_its_columns_under_a_rule() -> None:
    rows = [
        ("app CPU per return", "3.86 ms (12.9 sig)", "<= 4 ms", verdict(True)),
        ("failed returns", "2", "0", verdict(False)),
    ]
    assert format_table(rows).splitlines() == [
        "metric              value               target   ok",
        "------------------  ------------------  -------  ---",
        "app CPU per return  3.86 ms (12.9 sig)  <= 4 ms  yes",
        "failed returns      2                   0        NO",
    ]
    assert COLUMNS == ("metric", "value", "target", "ok")


def test_a_table_refuses_a_row_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="4 cells"):
        format_table([("only", "three", "cells")])
