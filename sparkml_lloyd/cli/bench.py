"""The ``bench`` command: runs the benchmark runner of a source checkout,
``python -m benchmarks.run``, as a child process in the checkout's root folder.

The runner belongs to the repository, not to the installed package: this command only finds
the checkout, forwards the arguments and returns the runner's exit status. It starts no
Spark itself and changes nothing in this process (no ``sys.path``, no environment).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import sparkml_lloyd
from sparkml_lloyd.cli.arguments import PROG, bench_parser
from sparkml_lloyd.cli.errors import CliError

__all__ = ["find_bench_runner", "run_bench"]

RUNNER = Path("benchmarks") / "run.py"
RUNNER_MODULE = "benchmarks.run"


def _candidate_roots() -> list[Path]:
    """The current directory, then the folder holding the installed package (a source
    checkout installed with ``pip install -e .``)."""
    return [Path.cwd(), Path(sparkml_lloyd.__file__).resolve().parent.parent]


def find_bench_runner() -> Path | None:
    """``benchmarks/run.py`` in the current directory, or next to the package's parent
    directory (a source checkout installed with ``pip install -e .``); None without one."""
    for root in _candidate_roots():
        candidate = root / RUNNER
        if candidate.is_file():
            return candidate
    return None


def _not_found() -> str:
    looked = " and ".join(str(root / "benchmarks") for root in _candidate_roots())
    return (f"benchmarks/run.py was not found (looked in {looked}): 'bench' runs from a "
            "source checkout; clone the repository, install it with 'pip install -e .' and "
            f"run '{PROG} bench' there")


def _run_runner(root: Path, argv: Sequence[str]) -> int:
    """``python -m benchmarks.run ARGV`` in ``root``, its output straight to ours; its exit
    status (``128 + N`` when signal N ended it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    status = subprocess.run([sys.executable, "-m", RUNNER_MODULE, *argv], cwd=root).returncode
    return status if status >= 0 else 128 - status


def run_bench(forwarded: Sequence[str], master: str | None) -> int:
    """``bench``: run the runner with ``forwarded`` (preceded by ``--master master`` when
    given before ``bench``); ``--help`` prints this command's help, then the runner's."""
    forwarded = list(forwarded)
    runner = find_bench_runner()
    if forwarded[:1] in (["-h"], ["--help"]):
        bench_parser().print_help()
        if runner is None:
            print(f"\n{_not_found()}.")
            return 0
        print(f"\nOptions of {runner} ({PROG} bench passes them on):\n", flush=True)
        return _run_runner(runner.parent.parent, ["--help"])
    if runner is None:
        raise CliError(_not_found())
    if forwarded[:1] == ["--"]:
        forwarded = forwarded[1:]
    passed = ["--master", master] if master is not None else []
    return _run_runner(runner.parent.parent, [*passed, *forwarded])
