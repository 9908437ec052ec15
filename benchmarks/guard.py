"""The benchmark guard: runs each guarded benchmark's `--quick` form and fails when a figure got more than 2x
worse than its baseline (`benchmarks/baseline.json`), when a benchmark crashes, or when a baseline figure is
missing from its output; a benchmark that fails is run once more and judged on its better attempt, so a
regression must show twice. `make test` runs it after lint and before the tests; `make bench` runs the full forms
with `--full --record` and rewrites the baseline on purpose.

Each figure line's `ratio` is compared (contract.py: value over a peer measured in the same run, so the machine's
speed and load cancel): for `better: lower` a figure fails when now > 2 x baseline, for `higher` when now <
baseline / 2. A figure the baseline does not hold yet is reported with a loud warning line and passes (it is
recorded by the next `--record`); a figure line marked `"guard": false` is printed by its benchmark but neither
recorded nor compared: training.py's `retrain_fixed_cost_s` (a difference, its ratio near zero, where 2x is noise;
`retrain_overhead_ratio` guards the same times) and serving.py's two p99 figures (tail latencies of 2 s runs on
shared cores were 5x to 10x apart from run to run; the requests-per-second ratios guard the server).

Nothing a benchmark starts may outlive it: each runs with a token of its own in the environment
(`ML_PLATFORM_BENCHMARK_RUN`, inherited by every process it starts), and once it has exited (within
`LEFTOVER_GRACE_S`) no TCP socket may still listen in a process that carries that token. One that does fails the
guard, naming the benchmark, the port and the process, which the guard then ends so the next benchmark finds its
ports free.

Guarded, quick forms run one after the other (well under a minute each): label_fields.py, refit.py,
serving_parts.py, serving.py, training.py, monitoring.py, backfill.py, many_models.py (its idle daemon: full only),
review.py.
Left out of the guard, run by `make bench` only (`--full`):
- stack.py: needs a Docker engine and docker-compose, builds the project image and brings the production stack
  up (minutes);
- test_suite.py: runs CI (`bash .ci/run`: install and the whole test suite) on fresh clones of two commits;
  run inside `make test` it would run the tests it is part of;
- scale.py: retrains at millions of rows per window (its quick form alone takes minutes);
- reproduce.py: its quick form backfills a window and makes two versions by retrains in fresh processes before
  it reproduces them (about a minute, three times the guard's share for one benchmark).
serving_floor.py (the floor app serving.py serves) and scale_data.py (scale.py's data) are parts of those
benchmarks, not benchmarks.

    python benchmarks/guard.py [--full] [--record] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
WORSE_FACTOR = 2.0

#: Run by `make test` (quick forms) and `make bench` (full forms), in this order.
GUARDED = (
    "label_fields.py",
    "refit.py",
    "serving_parts.py",
    "serving.py",
    "training.py",
    "monitoring.py",
    "backfill.py",
    "many_models.py",
    "review.py",
)
#: Run by `make bench` only (see the docstring for why).
HEAVY = ("scale.py", "stack.py", "test_suite.py", "reproduce.py")
QUICK_TIMEOUT_S = 300
FULL_TIMEOUT_S = 4 * 3600
#: The environment variable that marks every process one benchmark run starts (its value: that run's token).
RUN_ENV = "ML_PLATFORM_BENCHMARK_RUN"
#: How long a benchmark's servers may take to close their sockets once it has exited.
LEFTOVER_GRACE_S = 5.0


@dataclass(frozen=True)
class Observed:
    """One figure line of a benchmark's output, as the guard keys and compares it."""

    key: str
    benchmark: str
    ratio: float
    better: str


@dataclass(frozen=True)
class Verdict:
    """One figure's comparison: `factor` is how many times worse than the baseline (below 1: better)."""

    figure: str
    benchmark: str | None
    baseline: float | None
    now: float | None
    factor: float | None
    ok: bool
    note: str = ""


def key_of(line: dict[str, Any]) -> str:
    """The guard's name for a figure line: `figure`, or `figure/case` for a figure measured in cases."""
    return f"{line['figure']}/{line['case']}" if line.get("case") is not None else str(line["figure"])


def parse_figures(benchmark: str, stdout: str) -> list[Observed]:
    """The guarded figure lines of one benchmark's output (other JSON lines and plain text are skipped)."""
    found = []
    for text in stdout.splitlines():
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(line, dict) or "figure" not in line or line.get("guard") is False:
            continue
        if not isinstance(line.get("ratio"), int | float) or line.get("better") not in ("lower", "higher"):
            continue  # a line outside the contract is reported as missing when the baseline expects it
        found.append(Observed(key_of(line), benchmark, float(line["ratio"]), line["better"]))
    return found


def worse_factor(baseline: float, now: float, better: str) -> float:
    """How many times worse `now` is than `baseline` (1: the same, below 1: better)."""
    if better == "lower":
        return now / baseline if baseline > 0 else (1.0 if now <= baseline else float("inf"))
    return baseline / now if now > 0 else (1.0 if now >= baseline else float("inf"))


def compare(
    baseline: dict[str, dict[str, Any]], observed: list[Observed], crashed: dict[str, str], ran: list[str]
) -> list[Verdict]:
    """Every figure's verdict: each baseline figure of a benchmark that ran against its observed ratio, every
    observed figure the baseline lacks (ok, with a warning note), and one failed verdict per crashed benchmark.
    `ran`: the benchmarks run this time (baseline figures of others are not expected)."""
    verdicts = []
    seen = {figure.key: figure for figure in observed}
    for name, expected in sorted(baseline.items()):
        benchmark = expected.get("benchmark")
        if benchmark is not None and benchmark not in ran:
            continue
        now = seen.get(name)
        if now is None:
            note = f"missing from the output of {benchmark}" + (" (it crashed)" if benchmark in crashed else "")
            verdicts.append(Verdict(name, benchmark, expected["ratio"], None, None, False, note))
            continue
        better = expected.get("better", now.better)
        factor = worse_factor(float(expected["ratio"]), now.ratio, better)
        ok = factor <= WORSE_FACTOR
        note = "" if ok else f"more than {WORSE_FACTOR:g}x worse than the baseline (better: {better})"
        verdicts.append(Verdict(name, now.benchmark, expected["ratio"], now.ratio, round(factor, 3), ok, note))
    for figure in observed:
        if figure.key not in baseline:
            note = "WARNING: not in the baseline, not compared; record it (make bench, or guard.py --record)"
            verdicts.append(Verdict(figure.key, figure.benchmark, None, figure.ratio, None, True, note))
    for benchmark, reason in sorted(crashed.items()):
        verdicts.append(Verdict(f"{benchmark} run", benchmark, None, None, None, False, reason))
    return verdicts


def best_of(first: list[Observed], second: list[Observed]) -> list[Observed]:
    """Two attempts' figures merged, each figure at its better ratio: a benchmark that failed is run once more,
    so a regression must show twice while a noisy round (another process taking the cores) passes."""
    best = {figure.key: figure for figure in first}
    for figure in second:
        kept = best.get(figure.key)
        if kept is None or worse_factor(kept.ratio, figure.ratio, figure.better) < 1:
            best[figure.key] = figure
    return list(best.values())


def recorded(observed: list[Observed]) -> dict[str, dict[str, Any]]:
    """A baseline section from one run's figures."""
    return {
        figure.key: {"ratio": figure.ratio, "better": figure.better, "benchmark": figure.benchmark}
        for figure in sorted(observed, key=lambda figure: figure.key)
    }


@dataclass(frozen=True)
class Listener:
    """A TCP socket still listening in a process a benchmark started."""

    port: int
    address: str
    pid: int
    command: str

    def __str__(self) -> str:
        return f"port {self.port} on {self.address} (pid {self.pid}: {self.command})"


@dataclass(frozen=True)
class Run:
    benchmark: str
    seconds: float
    exit_code: int
    stdout: str
    stderr: str
    leftovers: tuple[Listener, ...] = ()


def listeners_of(token: str) -> list[Listener]:
    """The TCP sockets listening now in processes whose environment carries `token` (as `RUN_ENV`): what one
    benchmark run started, however far down, even once re-parented to init."""
    import psutil

    found = set()
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status != psutil.CONN_LISTEN or connection.pid is None:
            continue
        try:
            process = psutil.Process(connection.pid)
            if process.environ().get(RUN_ENV) != token:
                continue
            command = " ".join(process.cmdline())[:200]
        except psutil.Error:  # gone meanwhile, or not ours to read: not this run's
            continue
        found.add(Listener(connection.laddr.port, connection.laddr.ip, connection.pid, command))
    return sorted(found, key=lambda listener: (listener.port, listener.address))


def leftovers_after(token: str) -> tuple[Listener, ...]:
    """The run's listeners still open `LEFTOVER_GRACE_S` after it exited (none: returns at once); those left are
    ended."""
    import psutil

    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while (left := listeners_of(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in {listener.pid for listener in left}:  # the run started it (it carries the run's token)
        try:
            process = psutil.Process(pid)
            process.kill()
            process.wait(timeout=10)
        except (psutil.Error, psutil.TimeoutExpired):
            pass
    return tuple(left)


def leak_verdicts(runs: list[Run]) -> list[Verdict]:
    """One failed verdict per benchmark that left a listener behind, naming each port and process."""
    return [
        Verdict(
            f"{run.benchmark} leftovers",
            run.benchmark,
            None,
            None,
            None,
            False,
            "still listening after it exited: " + "; ".join(map(str, run.leftovers)),
        )
        for run in runs
        if run.leftovers
    ]


def run(benchmark: str, full: bool) -> Run:
    """One benchmark as a subprocess. Quick forms run with OpenMP threads that sleep while they wait
    (OMP_WAIT_POLICY=PASSIVE, unless set): with the default spinning, LightGBM's two threads trained the same
    window 4x to 20x slower whenever other processes held the cores (0.9-2.3 s passive, 4-25 s spinning, on a
    2-core machine at load 7), which swung training.py's ratios 3x from run to run."""
    command = [sys.executable, str(HERE / benchmark), *([] if full else ["--quick"])]
    env = dict(os.environ) if full else {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    token = f"{benchmark}-{uuid.uuid4().hex}"
    env[RUN_ENV] = token
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=FULL_TIMEOUT_S if full else QUICK_TIMEOUT_S
        )
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as timeout:
        code, stdout = -1, _text(timeout.stdout)
        stderr = f"{_text(timeout.stderr)}\ntimed out after {timeout.timeout:g} s"
    seconds = round(time.perf_counter() - started, 1)
    return Run(benchmark, seconds, code, stdout, stderr, leftovers_after(token))


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the full forms, the heavy benchmarks too (make bench)")
    parser.add_argument("--record", action="store_true", help="rewrite this form's baseline from this run")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these benchmarks (file names)")
    args = parser.parse_args(argv)
    form = "full" if args.full else "quick"
    benchmarks = [*GUARDED, *HEAVY] if args.full else list(GUARDED)
    if args.only:
        benchmarks = [name for name in benchmarks if name in args.only or name.removesuffix(".py") in args.only]
    stored = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    began = time.perf_counter()
    observed: list[Observed] = []
    crashed: dict[str, str] = {}
    runs: list[Run] = []
    for benchmark in benchmarks:
        result = run(benchmark, args.full)
        runs.append(result)
        figures = parse_figures(benchmark, result.stdout)
        observed += figures
        print(json.dumps({"benchmark": benchmark, "seconds": result.seconds, "figures": len(figures)}), flush=True)
        if result.exit_code != 0:
            crashed[benchmark] = f"exit code {result.exit_code}: {result.stderr.strip()[-1500:]}"
    verdicts = compare(stored.get(form, {}), observed, crashed, benchmarks)
    again = sorted(
        {v.benchmark for v in verdicts if not v.ok and v.benchmark is not None and v.benchmark in benchmarks}
    )
    if again and not args.record:
        for benchmark in again:
            print(json.dumps({"benchmark": benchmark, "note": "failed; run once more, judged on its better attempt"}))
            result = run(benchmark, args.full)
            runs.append(result)
            figures = parse_figures(benchmark, result.stdout)
            mine = [figure for figure in observed if figure.benchmark == benchmark]
            observed = [figure for figure in observed if figure.benchmark != benchmark] + best_of(mine, figures)
            print(json.dumps({"benchmark": benchmark, "seconds": result.seconds, "figures": len(figures)}), flush=True)
            if result.exit_code == 0 and benchmark in crashed:
                del crashed[benchmark]
            elif result.exit_code != 0:
                crashed[benchmark] = f"exit code {result.exit_code}: {result.stderr.strip()[-1500:]}"
        verdicts = compare(stored.get(form, {}), observed, crashed, benchmarks)
    verdicts += leak_verdicts(runs)  # never retried: a listener left behind is a bug, not noise
    for verdict in verdicts:
        print(json.dumps(asdict(verdict)), flush=True)
    failed = [verdict for verdict in verdicts if not verdict.ok]
    if args.record:
        section = {
            key: value
            for key, value in stored.get(form, {}).items()
            if value.get("benchmark") not in benchmarks or value.get("benchmark") in crashed
        }  # a crashed benchmark keeps its old figures
        section.update(recorded([figure for figure in observed if figure.benchmark not in crashed]))
        stored[form] = dict(sorted(section.items()))
        BASELINE.write_text(json.dumps(stored, indent=2) + "\n")
        # a new baseline: only crashes and leftovers fail
        failed = [v for v in failed if v.benchmark in crashed or v.figure.endswith(" leftovers")]
    seconds = round(time.perf_counter() - began, 1)
    print(
        json.dumps({"guard": form, "seconds": seconds, "figures": len(observed), "failed": [v.figure for v in failed]}),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
