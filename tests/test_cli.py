"""The ``sparkml-lloyd`` command line.

The commands run in-process, ``cli.main([...])``, on the tests' session (the command reuses
an active SparkSession and leaves it running). Only what needs the process boundary runs as a
process: the installed console script fits end to end with a Spark of its own that prints
nothing on stderr, and ``python -m sparkml_lloyd`` reports an argument error in one line
without starting Spark. ``bench`` is tested in test_cli_bench.py.

The data are three blobs whose points are symmetric around known means, so a converged fit
must return exactly those means (the weighted means, with a weight column), at a cost worked
out by hand: oracles that do not come from this package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparkml_lloyd import cli
from sparkml_lloyd.cli.errors import first_line
from sparkml_lloyd.cli.spark_session import CommandSession
from tests.helpers import run_main

MEANS = np.array([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
OFFSETS = np.array(
    [[1, 0], [-1, 0], [0, 1], [0, -1], [0.5, 0.5], [-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5]]
)
#: Cost at the means: per blob, four offsets of squared length 1 and four of 0.5.
COST_AT_MEANS = 3 * (4 * 1.0 + 4 * 0.5)
#: Parquet weights: the weighted means differ from MEANS, a second oracle.
WEIGHTS = [1.0, 2.0, 3.0, 1.0, 2.0, 5.0, 1.0, 4.0]
#: Rows appended to the blobs in invalid.csv: an empty cell (null) and a NaN.
INVALID_ROWS = "3.0,,bad0\nNaN,4.0,bad1\n"
TIMEOUT = 300
ITERATION = re.compile(r"^iteration (\d+): cost ([\d.e+-]+), largest center move ([\d.e+-]+), "
                       r"cluster sizes \[(\d+), (\d+), (\d+)\]$", re.M)


def run_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparkml_lloyd", *map(str, args)], capture_output=True,
        text=True, timeout=TIMEOUT,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})},
    )


def sorted_rows(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[np.lexsort(a.T[::-1])]


def nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """blobs.csv (x, y, label), blobs.parquet (id, x, y, w, label), invalid.csv (the blobs and
    two invalid rows), bad.parquet (not Parquet)."""
    root = tmp_path_factory.mktemp("cli")
    rows = [
        {"x": m[0] + o[0], "y": m[1] + o[1], "label": f"blob{i}"}
        for i, m in enumerate(MEANS) for o in OFFSETS
    ]
    pdf = pd.DataFrame(rows)
    pdf.to_csv(root / "blobs.csv", index=False)
    pq = pdf.copy()
    pq.insert(0, "id", np.arange(len(pq), dtype=np.int64))
    pq.insert(3, "w", WEIGHTS * len(MEANS))
    pq.to_parquet(root / "blobs.parquet", index=False)
    shutil.copy(root / "blobs.csv", root / "blobs.txt")
    (root / "invalid.csv").write_text((root / "blobs.csv").read_text() + INVALID_ROWS)
    (root / "bad.parquet").write_bytes(b"not parquet at all")
    return {"root": root, "csv": root / "blobs.csv", "parquet": root / "blobs.parquet",
            "invalid": root / "invalid.csv", "pdf": pdf, "pq": pq}


@pytest.fixture(scope="module")
def fitted(spark, data) -> dict:
    """``fit`` on the CSV with every numeric column as a feature (the string label is not)."""
    model = data["root"] / "model-csv"
    result = run_main("fit", data["csv"], "--k", "3", "--tol", "0", "--model-out", model)
    return {"result": result, "model": model}


@pytest.fixture
def no_spark(monkeypatch) -> list:
    """Records every request for a Spark session (there must be none)."""
    asked: list = []
    real_get = CommandSession.get

    def get(self):
        asked.append(self)
        return real_get(self)

    monkeypatch.setattr(CommandSession, "get", get)
    return asked


def assert_one_line_error(result, status: int, text: str) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sparkml-lloyd: error: "), lines[0]
    assert text in lines[0]
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "py4j" not in output.lower()


def model_stages(path: Path):
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler

    from sparkml_lloyd import LloydKMeansModel

    assembler, lloyd = PipelineModel.load(str(path)).stages
    assert isinstance(assembler, VectorAssembler)
    assert isinstance(lloyd, LloydKMeansModel)
    return assembler, lloyd


def model_centers(path: Path) -> tuple[list[str], np.ndarray]:
    assembler, lloyd = model_stages(path)
    return assembler.getInputCols(), np.array(lloyd.clusterCenters())


def printed_centers(out: str) -> np.ndarray:
    return np.array([json.loads(m) for m in re.findall(r"^  \d+: (\[.*\])$", out, re.M)])


# -- fit ------------------------------------------------------------------------------


def test_fit_prints_every_iteration_then_the_summary(fitted):
    result = fitted["result"]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith(f"fitting k=3 on {fitted['model'].parent / 'blobs.csv'} with "
                          "features: x, y\n")
    iterations = ITERATION.findall(out)
    assert [int(i[0]) for i in iterations] == list(range(1, len(iterations) + 1)), out
    costs = [float(i[1]) for i in iterations]
    assert costs == sorted(costs, reverse=True)  # Lloyd never increases the cost
    # tol=0: the last iteration assigned to the blob means and moved nothing.
    *_, last = iterations
    assert float(last[1]) == pytest.approx(COST_AT_MEANS)
    assert float(last[2]) == 0.0
    assert sorted(map(int, last[3:])) == [8, 8, 8]
    assert re.search(rf"^iterations: {len(iterations)} \(converged\)$", out, re.M), out
    assert "\ntraining cost: 18 (sum of squared distances to the nearest center)\n" in out
    assert re.search(r"^rows: 24; cluster sizes: \[8, 8, 8\]$", out, re.M), out
    assert out.endswith(f"model saved to {fitted['model']} (a PipelineModel: VectorAssembler "
                        f"+ LloydKMeansModel); apply it with: sparkml-lloyd predict INPUT "
                        f"--model {fitted['model']} --out OUTPUT\n")
    features, centers = model_centers(fitted["model"])
    assert features == ["x", "y"]
    np.testing.assert_allclose(sorted_rows(centers), sorted_rows(MEANS), atol=1e-6)
    np.testing.assert_allclose(printed_centers(out), centers, rtol=1e-9)


@pytest.mark.parametrize(
    ("options", "verdict"),
    [(["--max-iter", "1", "--tol", "0"], "stopped at --max-iter"),
     (["--max-iter", "5", "--tol", "1e9"], "converged")],
    ids=["max-iter", "tol"],
)
def test_fit_says_why_it_stopped(spark, data, tmp_path, options, verdict):
    """One iteration either way, from data points (k-means||) to the blob means, so the
    center move is > 0: under --tol 0 that is maxIter, under a huge tol convergence."""
    result = run_main("fit", data["csv"], "--k", "3", *options, "--model-out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    (iteration,) = ITERATION.findall(result.stdout)
    assert float(iteration[2]) > 0
    assert f"\niterations: 1 ({verdict})\n" in result.stdout


def test_fit_parquet_with_features_and_weights(spark, data):
    model = data["root"] / "model-parquet"
    result = run_main("fit", data["parquet"], "--k", "3", "--features", "x,y",
                      "--weight-col", "w", "--tol", "0", "--seed", "7", "--max-iter", "30",
                      "--model-out", model)
    assert result.returncode == 0, result.stderr
    assert "with features: x, y\n" in result.stdout
    assert "cluster sizes: [8, 8, 8]" in result.stdout
    features, centers = model_centers(model)
    assert features == ["x", "y"]
    pq = data["pq"]
    blobs = [pq[pq.label == f"blob{i}"] for i in range(len(MEANS))]
    expected = [np.average(b[["x", "y"]], axis=0, weights=b["w"]) for b in blobs]
    np.testing.assert_allclose(sorted_rows(centers), sorted_rows(expected), atol=1e-6)
    cost = sum(float((b["w"] * ((b[["x", "y"]] - e) ** 2).sum(axis=1)).sum())
               for b, e in zip(blobs, expected, strict=True))
    match = re.search(r"^training cost: (\S+) \(weighted sum of squared distances", result.stdout,
                      re.M)
    assert match, result.stdout
    assert float(match.group(1)) == pytest.approx(cost, rel=1e-9)


# -- --handle-invalid -----------------------------------------------------------------


def test_invalid_rows_stop_the_fit_by_default(spark, data):
    result = run_main("fit", data["invalid"], "--k", "3", "--model-out", data["root"] / "never")
    assert_one_line_error(result, 1, "has 2 rows with NaN, infinite or null values")
    assert not (data["root"] / "never").exists()


@pytest.mark.parametrize("mode", ["skip", "keep"])
def test_handle_invalid_leaves_them_out_of_the_fit_and_predict_follows(spark, data, mode):
    model = data["root"] / f"model-{mode}"
    result = run_main("fit", data["invalid"], "--k", "3", "--tol", "0", "--handle-invalid",
                      mode, "--model-out", model)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^rows: 24 of 26 \(2 invalid rows left out: --handle-invalid {mode}\); "
                     r"cluster sizes: \[8, 8, 8\]$", result.stdout, re.M), result.stdout
    _, centers = model_centers(model)
    np.testing.assert_allclose(sorted_rows(centers), sorted_rows(MEANS), atol=1e-6)
    assert model_stages(model)[1].getHandleInvalid() == mode

    out_path = data["root"] / f"predicted-{mode}.csv"
    result = run_main("predict", data["invalid"], "--model", model, "--out", out_path)
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(out_path)
    valid = out[out.label.str.startswith("blob")]
    np.testing.assert_array_equal(valid["prediction"].to_numpy(),
                                  nearest(valid[["x", "y"]].to_numpy(dtype=float), centers))
    if mode == "skip":  # the invalid rows are dropped
        assert sorted(out.label) == sorted(data["pdf"].label)
        assert "wrote 24 rows" in result.stdout
    else:  # ... or kept, without a prediction
        assert len(out) == 26
        assert out.loc[~out.label.str.startswith("blob"), "prediction"].isna().all()
        assert result.stdout.rstrip().endswith(
            "rows without a prediction (invalid features): 2")
        assert "wrote 26 rows" in result.stdout


# -- predict --------------------------------------------------------------------------


def check_predictions(out: pd.DataFrame, source: pd.DataFrame, model: Path) -> None:
    """Input rows kept, one label per blob, and the label of the nearest saved center."""
    assert list(out.columns) == [*source.columns, "prediction"]
    assert len(out) == len(source)
    assert sorted(map(tuple, out[["x", "y"]].to_numpy())) == sorted(
        map(tuple, source[["x", "y"]].to_numpy())
    )
    per_blob = out.groupby("label")["prediction"].unique()
    assert all(len(p) == 1 for p in per_blob)
    assert sorted(p[0] for p in per_blob) == [0, 1, 2]
    _, centers = model_centers(model)
    expected = nearest(out[["x", "y"]].to_numpy(dtype=float), centers)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


def test_predict_parquet_to_one_csv_file(data, fitted):
    out = data["root"] / "predicted.csv"
    result = run_main("predict", data["parquet"], "--model", fitted["model"], "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.is_file()  # one CSV file with a header, not a folder
    assert result.stdout == (f"wrote 24 rows with a 'prediction' column to {out} (one CSV "
                             "file with a header); rows per cluster: {0: 8, 1: 8, 2: 8}\n")
    check_predictions(pd.read_csv(out), data["pq"], fitted["model"])


def test_predict_csv_to_parquet(data, fitted, tmp_path):
    out = tmp_path / "predicted.parquet"  # its own folder: the test may run again
    result = run_main("predict", data["csv"], "--model", fitted["model"], "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.is_dir()
    assert "(a Parquet folder); rows per cluster: {0: 8, 1: 8, 2: 8}" in result.stdout
    check_predictions(pd.read_parquet(out), data["pdf"], fitted["model"])


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["fit", "{csv}", "--k", "3", "--features", "x,nope"], "'nope' is not a column"),
        (["fit", "{csv}", "--k", "3", "--features", "x,label"],
         "'label' has type string; features must be numeric columns"),
        (["fit", "{root}/bad.parquet", "--k", "3"], "is not a Parquet file"),
    ],
    ids=["unknown-column", "string-column", "not-parquet"],
)
def test_errors_found_on_spark_are_one_line(spark, data, args, text):
    args = [a.format(root=data["root"], csv=data["csv"]) for a in args]
    result = run_main(*args, "--model-out", data["root"] / "never")
    assert_one_line_error(result, 1, text)
    assert not (data["root"] / "never").exists()


@pytest.mark.parametrize(
    ("args", "status", "text"),
    [
        (["fit", "{root}/missing.csv", "--k", "3", "--model-out", "{root}/m"], 1,
         "input '{root}/missing.csv' does not exist"),
        (["fit", "{csv}", "--k", "1", "--model-out", "{root}/m"], 2, "k=1 is not allowed"),
        (["fit", "{csv}", "--k", "3", "--tol", "-1", "--model-out", "{root}/m"], 2,
         "tol=-1.0 is not allowed"),
        (["fit", "{csv}", "--k", "three", "--model-out", "{root}/m"], 2, "invalid int value"),
        (["fit", "{csv}", "--k", "3"], 2, "required: --model-out"),
        (["fit", "{csv}", "--k", "3", "--features", "x,,y", "--model-out", "{root}/m"], 2,
         "expected COL[,COL...]"),
        (["fit", "{csv}", "--k", "3", "--handle-invalid", "ignore", "--model-out", "{root}/m"],
         2, "argument --handle-invalid: invalid choice: 'ignore'"),
        (["fit", "{root}/blobs.txt", "--k", "3", "--model-out", "{root}/m"], 2,
         "cannot tell the format of input"),
        (["fit", "{csv}", "--k", "3", "--model-out", "{csv}"], 1, "add --overwrite"),
        (["predict", "{csv}", "--model", "{root}/no-model", "--out", "{root}/o.csv"], 1,
         "--model '{root}/no-model' does not exist"),
        (["predict", "{csv}", "--model", "{root}", "--out", "{root}/o.json"], 2,
         "cannot tell the format of --out"),
        (["predict", "{csv}", "--model", "{root}", "--out", "{csv}"], 1, "add --overwrite"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
    ids=["missing-input", "k=1", "negative-tol", "k-not-int", "no-model-out", "empty-feature",
         "handle-invalid", "txt-input", "model-out-exists", "missing-model",
         "unknown-output-format", "out-exists", "unknown-command"],
)
def test_argument_errors_are_one_line_before_spark(data, no_spark, args, status, text):
    args = [a.format(root=data["root"], csv=data["csv"]) for a in args]
    assert_one_line_error(run_main(*args), status, text.format(root=data["root"]))
    assert no_spark == []


@pytest.mark.parametrize(
    ("args", "status", "text"),
    [
        (["fit", "{root}/missing.csv", "--k", "3", "--model-out", "{root}/m"], 1,
         "input '{root}/missing.csv' does not exist"),
        (["fit", "{csv}", "--k", "1", "--model-out", "{root}/m"], 2, "k=1 is not allowed"),
    ],
    ids=["missing-input", "k=1"],
)
def test_errors_as_a_process_need_no_java(data, tmp_path, args, status, text):
    """``python -m sparkml_lloyd`` with no usable Java: had it tried to start Spark, the
    error would be 'Java was not found'."""
    args = [a.format(root=data["root"], csv=data["csv"]) for a in args]
    result = run_process(*args, env={"JAVA_HOME": str(tmp_path / "no-java")})
    assert_one_line_error(result, status, text.format(root=data["root"]))


def test_error_line_of_a_python_worker_traceback():
    text = (
        "An exception was thrown from the Python worker. Please see the stack trace below.\n"
        "Traceback (most recent call last):\n"
        '  File "/x/worker.py", line 1, in main\n'
        "ValueError: The features have length 3 but the model was fitted on 2 features.\n"
    )
    assert first_line(text) == (
        "ValueError: The features have length 3 but the model was fitted on 2 features."
    )
    assert first_line("[PATH_NOT_FOUND] Path does not exist: file:/a.csv. SQLSTATE: 42K03"
                      ) == "[PATH_NOT_FOUND] Path does not exist: file:/a.csv."
    assert cli.describe_error(cli.CliError("input 'a.csv' does not exist")) == (
        "input 'a.csv' does not exist")


# -- help and entry points ------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["fit"], ["predict"], ["demo"]],
                         ids=lambda c: c[0] if c else "top")
def test_help(no_spark, command):
    result = run_main(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(" ".join(["usage: sparkml-lloyd", *command]))
    assert "--master URL" in result.stdout
    assert no_spark == []


def test_fit_help_names_handle_invalid():
    out = run_main("fit", "--help").stdout
    assert "--handle-invalid {error,skip,keep}" in out


def test_console_script_fits_with_a_quiet_spark_of_its_own(spark, data, tmp_path):
    """The installed entry point, end to end: its own Spark (started and stopped), Spark's
    logs and the JVM's notices silenced, so stderr is empty."""
    script = shutil.which("sparkml-lloyd", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the sparkml-lloyd script is not installed next to this Python")
    model = tmp_path / "model"
    result = subprocess.run(
        [script, "fit", str(data["csv"]), "--k", "3", "--tol", "0", "--master", "local[1]",
         "--model-out", str(model)],
        capture_output=True, text=True, timeout=TIMEOUT,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert ITERATION.search(result.stdout), result.stdout
    assert re.search(r"^iterations: \d+ \(converged\)$", result.stdout, re.M), result.stdout
    _, centers = model_centers(model)
    np.testing.assert_allclose(sorted_rows(centers), sorted_rows(MEANS), atol=1e-6)
