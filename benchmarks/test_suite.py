"""How long CI's `bash .ci/run` (the README's `make test`, install included) takes on a fresh clone of each of
two commits, one after the other on this machine: the suite's cost before and after a change.

Each commit is cloned into its own temporary folder (nothing installed, as on a fresh machine) and run
alone. Prints one JSON line per commit (wall seconds, pytest's own seconds, tests passed) and a last line with
the figure in the contract's form (benchmarks/contract.py): `make_test_wall_ratio`, the head's wall seconds
against the base's. What is measured is pinned by the two commits (and the tests' own pinned data).

    python benchmarks/test_suite.py [--quick] [--base HEAD~1] [--head HEAD]

`--quick`: in each clone, only the spec tests (`pytest ml_platform_tests/spec`) with this interpreter, nothing
installed (the clone's package comes first on the path); the same figure. Not run by the guard (`make bench`
only): it runs the tests `make test` is part of.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contract import figure, quick_option

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"=+ (?P<summary>.*?) in (?P<seconds>[\d.]+)s")


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


QUICK_TESTS = ["ml_platform_tests/spec"]


def run_ci(ref: str, scratch: Path, quick: bool = False) -> dict:
    """Clone `ref` into a fresh folder and time `bash .ci/run` there (quick: the spec tests with this Python)."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    clone = scratch / commit[:12]
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", commit], check=True)
    log = scratch / f"{commit[:12]}.log"
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *QUICK_TESTS] if quick else ["bash", ".ci/run"]
    with log.open("wb") as output:
        code = subprocess.run(command, cwd=clone, stdout=output, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    found = SUMMARY.findall(log.read_text(errors="replace"))
    summary, pytest_seconds = found[-1] if found else ("no pytest summary", "nan")
    passed = re.search(r"(\d+) passed", summary)
    return {
        "ref": ref,
        "commit": commit[:12],
        "exit_code": code,
        "wall_s": round(wall, 1),
        "pytest_s": float(pytest_seconds),
        "passed": int(passed.group(1)) if passed else 0,
        "summary": summary,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD~1", help="the commit to compare against")
    parser.add_argument("--head", default="HEAD")
    quick_option(parser, "only the spec tests, with this interpreter")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ml_platform_suite_") as scratch:
        results = {}
        for role, ref in (("base", args.base), ("head", args.head)):
            results[role] = run_ci(ref, Path(scratch), args.quick)
            emit(step=role, **results[role])
    base, head = results["base"], results["head"]
    figure(
        "make_test_wall_ratio",
        value=head["wall_s"],
        unit="s",
        peer=f"the same on the base commit ({base['commit']})",
        peer_value=base["wall_s"],
        better="lower",
        goal=1.0,  # no slower
        pytest_ratio=round(head["pytest_s"] / base["pytest_s"], 3),
        head_tests=head["passed"],
        base_tests=base["passed"],
        command="pytest " + " ".join(QUICK_TESTS) if args.quick else "bash .ci/run",
        note="one run each, sequentially, on the same machine",
    )
    return 0 if base["exit_code"] == 0 and head["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
