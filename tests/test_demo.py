"""The demo reproduces the walkthrough's facts and writes valid PNG figures.

The facts come from the walkthrough itself (../shared/seed): first assignment 1124/57/319,
centers after one iteration, convergence after 6 iterations at 500/500/500.
"""

from __future__ import annotations

import os
import re
import struct
import sys

import pytest

from sparkml_lloyd import cli, demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_NAMES = [
    "01-data.png",
    "02-initial-centers.png",
    *[f"{i + 2:02d}-iteration-{i}.png" for i in range(1, 7)],
    "09-cost.png",
]


def assert_png(path: str) -> None:
    """PNG signature, an IHDR chunk with a plausible size, and more than a blank image."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, path
    assert head[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", head[16:24])
    assert width >= 300 and height >= 200, (path, width, height)
    assert os.path.getsize(path) > 5000, path


def check_walkthrough_output(out: str) -> None:
    assert re.findall(r"^iteration (\d+):", out, re.M) == [str(i) for i in range(1, 7)]
    assert re.search(r"^iteration 1: .*cluster sizes \[1124, 57, 319\]$", out, re.M), out
    # The walkthrough's centers after one iteration (In [17]).
    assert ("centers after the update: (1.70113951, -3.14750123) (5.88201222, 9.83307870) "
            "(7.96381989, 9.80003870)") in out
    assert re.search(r"^iteration 6: .*largest center move 0, cluster sizes \[500, 500, 500\]$",
                     out, re.M), out
    assert "converged (tol=0: no center moved) after 6 iterations" in out
    assert "final cluster sizes: [500, 500, 500]" in out


def test_run_demo_reproduces_the_walkthrough(spark, tmp_path, capsys):
    out_dir = str(tmp_path / "figures")
    files = demo.run_demo(out_dir, spark.sparkContext.master)
    out = capsys.readouterr().out
    check_walkthrough_output(out)

    assert [os.path.basename(f) for f in files] == EXPECTED_NAMES
    assert sorted(os.listdir(out_dir)) == EXPECTED_NAMES
    for path in files:
        assert_png(path)
    # It ends by naming the files it wrote.
    tail = out.rstrip().splitlines()[-len(files) - 1:]
    assert tail[0] == f"Wrote {len(files)} files to {out_dir}:"
    assert [line.strip() for line in tail[1:]] == files
    # The active session was reused, not stopped.
    assert spark.range(3).count() == 3


def test_demo_command(spark, tmp_path, capsys):
    """``sparkml-lloyd demo`` (in-process, on the active session): the same facts, nothing
    on stderr, the figures in --out."""
    out_dir = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    check_walkthrough_output(captured.out)
    assert sorted(os.listdir(out_dir)) == EXPECTED_NAMES
    assert spark.range(3).count() == 3  # the command left the session running


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # "not installed"
    with pytest.raises(ImportError, match=r'pip install "sparkml-lloyd\[demo\]"'):
        demo.run_demo(str(tmp_path))
    # The command reports it in one line, before starting Spark.
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("sparkml-lloyd: error: The demo needs matplotlib")
    assert 'pip install "sparkml-lloyd[demo]"' in err[0]
    assert os.listdir(tmp_path) == []
