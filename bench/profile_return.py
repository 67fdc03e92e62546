"""Where the app's CPU per happy saved-wallet return goes: return_flow's setup under py-spy.

    python bench/profile_return.py [--returns 400] [--threads 4] [--rate 1000] [--top 25]
                                   [--all-threads] [--perf] [--raw PATH] [--quick]

Same setup as bench/return_flow.py: the simulator in its own process (latency 0), the app under
`gunicorn --workers 1 --worker-class gthread --threads N`, SQLite, buyers prepared over HTTP.
After a warm-up the returns run one at a time while py-spy samples the gunicorn worker without
pausing it (`--nonblocking`). By default only the thread holding the GIL is sampled: that is
the Python code actually running. Non-idle sampling (`--all-threads`) also counts threads that
py-spy takes for busy while they wait for the GIL or a wake-up: on this app it reports about
1.4x the worker's CPU. Native work that releases the GIL (the RSA signature, SQLite, system
calls) is not in the GIL samples; `--perf` adds `perf record`'s on-CPU split by shared object.

Figures per return: samples / rate / returns, in ms and in `sig` (one RSA-2048 PSS-SHA256
signature, bench/units.py); the worker's CPU per return comes from /proc schedstat.
Needs py-spy (`pip install py-spy`; not in the requirements, only this script uses it) and, for
`--perf`, Linux perf.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.return_flow import (  # noqa: E402
    prepare_buyers,
    process_cpu_seconds,
    run_phase,
    start_simulator,
)
from bench.units import SignatureReference, format_table, measure_signature  # noqa: E402
from tests.support.servers import app_environment, generate_key_pair, start_gunicorn  # noqa: E402

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
PERF_DSO = re.compile(r"^\s*(?P<share>[\d.]+)%\s+(?P<dso>\S.*?)\s*$")
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
ATTACH_TIMEOUT = 10.0


@dataclass(frozen=True)
class Frame:
    function: str
    file: str

    @property
    def label(self) -> str:
        return f"{self.function} ({short_path(self.file)})"


def short_path(file: str) -> str:
    """Our files relative to the repository, libraries from their package, stdlib bare."""
    path = Path(file)
    if "site-packages" in path.parts:
        return "/".join(path.parts[path.parts.index("site-packages") + 1 :])
    for base in (ROOT, STDLIB):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return file


def module_of(file: str) -> str:
    """The group a frame's time is reported under: our file, a library package, a stdlib module."""
    path = Path(file)
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].removesuffix(".py")
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    if path.is_relative_to(STDLIB):
        return path.relative_to(STDLIB).parts[0].removesuffix(".py")
    return file


def parse_raw(text: str) -> Iterator[tuple[list[Frame], int]]:
    """py-spy's raw (collapsed) format: `root;...;leaf count` per line, frames `f (file:line)`."""
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            found = FRAME.match(part)
            frames.append(Frame(found["function"], found["file"]) if found else Frame(part, ""))
        yield frames, int(count)


@dataclass
class Profile:
    samples: int = 0
    own: Counter[Frame] = field(default_factory=Counter)  # the function is the leaf
    inclusive: Counter[Frame] = field(default_factory=Counter)  # anywhere on the stack
    module_own: Counter[str] = field(default_factory=Counter)
    module_inclusive: Counter[str] = field(default_factory=Counter)


def summarise(text: str) -> Profile:
    profile = Profile()
    for frames, count in parse_raw(text):
        profile.samples += count
        profile.own[frames[-1]] += count
        profile.module_own[module_of(frames[-1].file)] += count
        for frame in set(frames):  # recursion counts once
            profile.inclusive[frame] += count
        for module in {module_of(f.file) for f in frames}:
            profile.module_inclusive[module] += count
    return profile


def start_sampler(argv: Sequence[str], log: Path, ready: bytes | None) -> subprocess.Popen[bytes]:
    """Start a sampler; with `ready`, wait until its output says it samples."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(argv), stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + ATTACH_TIMEOUT
    while ready is not None and ready not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{argv[0]} did not attach: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    return process


def stop_sampler(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # both py-spy and perf write their output on SIGINT
    process.wait(timeout=60)


def perf_split(data: Path) -> list[tuple[str, float]]:
    """(shared object, share of on-CPU samples) from `perf report --sort dso`."""
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in report.splitlines():
        found = PERF_DSO.match(line)
        if found and not line.lstrip().startswith("#"):
            rows.append((found["dso"], float(found["share"]) / 100))
    return rows


@dataclass
class Run:
    returns: int
    failures: list[str]
    cpu_per_return: float
    raw_path: Path
    perf_data: Path | None


def profile_returns(args: argparse.Namespace, py_spy: str) -> Run:
    work = Path(tempfile.mkdtemp(prefix="bench-profile-return-"))
    keys = generate_key_pair(work / "keys")
    simulator = start_simulator(work, keys, 0.0)
    try:
        env = app_environment(
            keys=keys,
            simulator_url=simulator.base_url,
            database_url=f"sqlite:///{work / 'shop.sqlite3'}",
        )
        app = start_gunicorn(
            env=env,
            log_dir=work / "logs",
            name="app",
            workers=1,
            threads=args.threads,
            extra_args=["--worker-class", "gthread"],
        )
        try:
            warm_count = args.threads * 2
            print(f"preparing {warm_count + args.returns} buyers")
            buyers = prepare_buyers(app.base_url, simulator.base_url, warm_count + args.returns)
            run_phase("warm-up", buyers[:warm_count], args.threads, app, simulator.base_url)
            _master, *workers = app.pids()
            if len(workers) != 1:
                raise RuntimeError(f"expected one gunicorn worker, found {workers}")
            raw_path = args.raw or work / "py-spy.txt"
            spy_argv = [
                py_spy, "record", "--pid", str(workers[0]), "--rate", str(args.rate),
                "--format", "raw", "--function", "--full-filenames", "--nonblocking",
                "--output", str(raw_path), *([] if args.all_threads else ["--gil"]),
            ]  # fmt: skip
            samplers = [start_sampler(spy_argv, work / "py-spy.log", b"Sampling process")]
            perf_data = work / "perf.data" if args.perf else None
            if perf_data is not None:
                perf_argv = ["perf", "record", "-F", "999", "-p", str(workers[0])]
                perf_argv += ["-o", str(perf_data)]
                samplers.append(start_sampler(perf_argv, work / "perf.log", None))
                time.sleep(1.0)  # perf says nothing when it starts sampling
            try:
                cpu_before = process_cpu_seconds(workers)
                phase = run_phase("profiled", buyers[warm_count:], 1, app, simulator.base_url)
                cpu_per_return = (process_cpu_seconds(workers) - cpu_before) / len(phase.returns)
            finally:
                for sampler in samplers:
                    stop_sampler(sampler)
            return Run(len(phase.returns), phase.failures, cpu_per_return, raw_path, perf_data)
        finally:
            app.stop()
    finally:
        simulator.stop()


def print_report(
    args: argparse.Namespace, run: Run, profile: Profile, reference: SignatureReference
) -> None:
    rate: int = args.rate

    def per_return(count: int) -> float:
        return count / rate / run.returns

    what = "all non-idle threads" if args.all_threads else "the GIL holder"
    sampled = per_return(profile.samples)
    print(
        f"\nprofile of {run.returns} returns ({len(run.failures)} failed), one at a time, in"
        f" the gunicorn worker (gthread, {args.threads} threads)\n"
        f"worker CPU per return {reference.figure(run.cpu_per_return)}; sampled ({what},"
        f" {args.rate}/s) {reference.figure(sampled)} = {sampled / run.cpu_per_return:.0%} of"
        f" it; raw stacks in {run.raw_path}"
    )
    tables: list[tuple[str, Counter[str] | Counter[Frame]]] = [
        ("module, own time", profile.module_own),
        ("module, inclusive time", profile.module_inclusive),
        ("function, own time", profile.own),
        ("function, inclusive time", profile.inclusive),
    ]
    for title, counts in tables:
        rows = [
            (
                key.label if isinstance(key, Frame) else key,
                f"{count / profile.samples:.1%}",
                reference.figure(per_return(count)),
            )
            for key, count in counts.most_common(args.top)
        ]
        print()
        print(format_table(rows, header=(title, "share of samples", "per return")))
    if run.perf_data is not None:
        rows = [
            (dso, f"{share:.1%}", reference.figure(share * run.cpu_per_return))
            for dso, share in perf_split(run.perf_data)[: args.top]
        ]
        print()
        print(format_table(rows, header=("perf: on-CPU by shared object", "share", "per return")))
    print()
    print(format_table([reference.row()]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--returns", type=int, default=400, help="profiled returns, one at a time")
    parser.add_argument("--threads", type=int, default=4, help="gthread threads (1 worker)")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument(
        "--all-threads", action="store_true", help="sample every non-idle thread, not the GIL's"
    )
    parser.add_argument("--perf", action="store_true", help="add perf's split by shared object")
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--quick", action="store_true", help="smoke run: --returns 60 --top 10")
    args = parser.parse_args()
    if args.quick:
        args.returns, args.top = 60, 10
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        parser.error("py-spy is not installed: pip install py-spy")
    if args.perf and shutil.which("perf") is None:
        parser.error("--perf needs Linux perf on PATH")

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    reference = measure_signature(key=key)
    run = profile_returns(args, py_spy)
    reference = reference.merged(measure_signature(key=key))
    print_report(args, run, summarise(run.raw_path.read_text()), reference)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
