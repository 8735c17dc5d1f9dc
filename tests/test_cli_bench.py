"""``sparkml-lloyd bench``: runs ``python -m benchmarks.run`` of a source checkout as a
child process, forwarding its arguments, and returns the runner's status.

The runner here is a stand-in checkout written into a temporary folder, which records the
arguments, working directory and module name it was run with; no Spark starts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import sparkml_lloyd
from sparkml_lloyd import cli
from sparkml_lloyd.cli import bench as bench_command
from sparkml_lloyd.cli.spark_session import CommandSession

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_spark(monkeypatch) -> list:
    """Records every request for a Spark session (there must be none)."""
    asked: list = []
    monkeypatch.setattr(CommandSession, "get", lambda self: asked.append(self))
    return asked


STAND_IN_RUNNER = '''\
import argparse, json, os, sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="benchmarks/run.py")
    parser.add_argument("--stand-in-option", help="an option only this runner has")
    if argv == ["--help"]:
        parser.parse_args(argv)
    with open("seen.json", "w") as f:
        json.dump({"argv": argv, "cwd": os.getcwd(), "name": __name__}, f)
    return 3


if __name__ == "__main__":
    sys.exit(main())
'''


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A folder holding benchmarks/run.py (a stand-in), as the current directory."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "run.py").write_text(STAND_IN_RUNNER)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "forwarded"),
    [(["--master", "local[1]", "bench", "--grid", "smoke", "--repeats", "1"],
      ["--master", "local[1]", "--grid", "smoke", "--repeats", "1"]),
     (["bench", "--", "--grid", "smoke"], ["--grid", "smoke"])],
    ids=["master-before", "double-dash"],
)
def test_bench_runs_the_runner_as_a_process(checkout, no_spark, argv, forwarded):
    path, pythonpath = list(sys.path), os.environ.get("PYTHONPATH")
    assert cli.main(argv) == 3  # the runner's exit status
    seen = json.loads((checkout / "seen.json").read_text())
    assert seen == {"argv": forwarded, "cwd": str(checkout), "name": "__main__"}
    assert not [m for m in list(sys.modules.values())
                if str(getattr(m, "__file__", None) or "").startswith(str(checkout))]
    assert (sys.path, os.environ.get("PYTHONPATH")) == (path, pythonpath)
    assert no_spark == []


def test_bench_help_is_the_commands_then_the_runners(checkout, capfd):
    assert cli.main(["bench", "--help"]) == 0
    out = capfd.readouterr().out
    assert out.startswith(
        "usage: sparkml-lloyd bench [-h] [--master URL | --remote URL] [--verbose]\n")
    ours = out.index("python -m benchmarks.run")
    runner = out.index("usage: benchmarks/run.py")
    assert ours < out.index(f"Options of {checkout / 'benchmarks' / 'run.py'}") < runner
    assert "--stand-in-option" in out[runner:]
    assert not (checkout / "seen.json").exists()  # --help ran nothing


def test_bench_finds_the_checkout_the_package_is_installed_from(tmp_path, monkeypatch):
    if Path(sparkml_lloyd.__file__).resolve().parent.parent != ROOT:
        pytest.skip("the package is not imported from this checkout")
    monkeypatch.chdir(tmp_path)
    assert cli.find_bench_runner() == ROOT / "benchmarks" / "run.py"


def test_bench_without_a_checkout_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench_command, "find_bench_runner", lambda: None)
    assert cli.main(["bench", "--grid", "smoke"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("sparkml-lloyd: error: benchmarks/run.py was not found")
    assert "pip install -e ." in err[0]


def test_bench_refuses_a_remote_session(capsys):
    assert cli.main(["--remote", "sc://127.0.0.1:1", "bench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give --master, not --remote" in err[0]
