"""The ``sparkml-lloyd`` command line.

Commands that start Spark run as subprocesses (``python -m sparkml_lloyd ...``, each with
its own Spark, ~10 s): fit on CSV, fit on Parquet, predict to CSV, predict to Parquet and one
error found by Spark. Everything that fails before Spark starts (help, argument errors,
missing files, bench plumbing) is cheap and checked too.

The data are three blobs whose points are symmetric around known means, so a converged fit
must return exactly those means (the weighted means, with a weight column): an oracle that
does not come from this package.
"""

from __future__ import annotations

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

MEANS = np.array([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
OFFSETS = np.array(
    [[1, 0], [-1, 0], [0, 1], [0, -1], [0.5, 0.5], [-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5]]
)
#: Parquet weights: the weighted means differ from MEANS, a second oracle.
WEIGHTS = [1.0, 2.0, 3.0, 1.0, 2.0, 5.0, 1.0, 4.0]
TIMEOUT = 300


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.run(
        [sys.executable, "-m", "sparkml_lloyd", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT,
    )


def sorted_rows(a) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    return a[np.lexsort(a.T[::-1])]


def nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """blobs.csv (x, y, label) and blobs.parquet (id, x, y, w, label)."""
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
    return {"root": root, "csv": root / "blobs.csv", "parquet": root / "blobs.parquet",
            "pdf": pdf, "pq": pq}


@pytest.fixture(scope="module")
def fitted(data) -> dict:
    """``fit`` on the CSV with every numeric column as a feature (the string label is not)."""
    model = data["root"] / "model-csv"
    result = run_cli("fit", str(data["csv"]), "--k", "3", "--tol", "0",
                     "--model-out", str(model))
    return {"result": result, "model": model}


def assert_clean(result: subprocess.CompletedProcess) -> None:
    """Exit 0 and nothing on stderr: Spark's logs and the JVM's notices are silenced."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def assert_one_line_error(result: subprocess.CompletedProcess, status: int, text: str) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sparkml-lloyd: error: "), lines[0]
    assert text in lines[0]
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "py4j" not in output.lower()


def model_centers(spark, path: Path) -> tuple[list[str], np.ndarray]:
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler

    from sparkml_lloyd import LloydKMeansModel

    model = PipelineModel.load(str(path))
    assembler, lloyd = model.stages
    assert isinstance(assembler, VectorAssembler)
    assert isinstance(lloyd, LloydKMeansModel)
    return assembler.getInputCols(), np.array(lloyd.clusterCenters())


# -- fit ------------------------------------------------------------------------------


def test_fit_csv_prints_progress_and_saves_a_pipeline(spark, fitted):
    result = fitted["result"]
    assert_clean(result)
    out = result.stdout
    assert re.search(r"^iteration 1: cost [\d.e+]+, largest center move [\d.e+-]+, "
                     r"cluster sizes \[\d+, \d+, \d+\]$", out, re.M), out
    assert re.search(r"^iterations: \d+ \(converged\)$", out, re.M), out
    assert "cluster sizes: [8, 8, 8]" in out
    # Cost at the blob means: every offset has squared length 1 or 0.5.
    assert "training cost: 18 " in out
    assert f"model saved to {fitted['model']}" in out
    features, centers = model_centers(spark, fitted["model"])
    assert features == ["x", "y"]
    np.testing.assert_allclose(sorted_rows(centers), sorted_rows(MEANS), atol=1e-6)


def test_fit_parquet_with_features_and_weights(spark, data):
    model = data["root"] / "model-parquet"
    result = run_cli("fit", str(data["parquet"]), "--k", "3", "--features", "x,y",
                     "--weight-col", "w", "--tol", "0", "--seed", "7", "--max-iter", "30",
                     "--master", "local[1]", "--model-out", str(model))
    assert_clean(result)
    assert "with features: x, y" in result.stdout
    assert "cluster sizes: [8, 8, 8]" in result.stdout
    features, centers = model_centers(spark, model)
    assert features == ["x", "y"]
    pq = data["pq"]
    expected = [
        np.average(pq.loc[pq.label == f"blob{i}", ["x", "y"]], axis=0,
                   weights=pq.loc[pq.label == f"blob{i}", "w"])
        for i in range(len(MEANS))
    ]
    np.testing.assert_allclose(sorted_rows(centers), sorted_rows(expected), atol=1e-6)


# -- predict --------------------------------------------------------------------------


def check_predictions(spark, out: pd.DataFrame, source: pd.DataFrame, model: Path) -> None:
    """Input rows kept, one label per blob, and the label of the nearest saved center."""
    assert list(out.columns) == [*source.columns, "prediction"]
    assert len(out) == len(source)
    assert sorted(map(tuple, out[["x", "y"]].to_numpy())) == sorted(
        map(tuple, source[["x", "y"]].to_numpy())
    )
    per_blob = out.groupby("label")["prediction"].unique()
    assert all(len(p) == 1 for p in per_blob)
    assert sorted(p[0] for p in per_blob) == [0, 1, 2]
    _, centers = model_centers(spark, model)
    expected = nearest(out[["x", "y"]].to_numpy(dtype=float), centers)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)


def test_predict_parquet_to_one_csv_file(spark, data, fitted):
    out = data["root"] / "predicted.csv"
    result = run_cli("predict", str(data["parquet"]), "--model", str(fitted["model"]),
                     "--out", str(out), "--master", "local[1]")
    assert_clean(result)
    assert out.is_file()  # one CSV file with a header, not a folder
    assert "wrote 24 rows" in result.stdout
    check_predictions(spark, pd.read_csv(out), data["pq"], fitted["model"])


def test_predict_csv_to_parquet(spark, data, fitted):
    out = data["root"] / "predicted.parquet"
    result = run_cli("predict", str(data["csv"]), "--model", str(fitted["model"]),
                     "--out", str(out), "--master", "local[1]")
    assert_clean(result)
    assert "rows per cluster: {0: 8, 1: 8, 2: 8}" in result.stdout
    check_predictions(spark, pd.read_parquet(out), data["pdf"], fitted["model"])


# -- errors ---------------------------------------------------------------------------


def test_unknown_feature_column_is_one_line(data):
    result = run_cli("fit", str(data["csv"]), "--k", "3", "--features", "x,nope",
                     "--master", "local[1]", "--model-out", str(data["root"] / "never"))
    assert_one_line_error(result, 1, "'nope' is not a column")
    assert not (data["root"] / "never").exists()


@pytest.mark.parametrize(
    ("args", "status", "text"),
    [
        (["fit", "{root}/missing.csv", "--k", "3", "--model-out", "{root}/m"], 1,
         "input '{root}/missing.csv' does not exist"),
        (["fit", "{csv}", "--k", "1", "--model-out", "{root}/m"], 2, "k=1 is not allowed"),
    ],
    ids=["missing-input", "k=1"],
)
def test_errors_before_spark_starts_as_a_process(data, args, status, text):
    args = [a.format(root=data["root"], csv=data["csv"]) for a in args]
    assert_one_line_error(run_cli(*args), status, text.format(root=data["root"]))


@pytest.mark.parametrize(
    ("args", "status", "text"),
    [
        (["fit", "{csv}", "--k", "3", "--tol", "-1", "--model-out", "{root}/m"], 2,
         "tol=-1.0 is not allowed"),
        (["fit", "{csv}", "--k", "three", "--model-out", "{root}/m"], 2, "invalid int value"),
        (["fit", "{csv}", "--k", "3"], 2, "required: --model-out"),
        (["fit", "{csv}", "--k", "3", "--features", "x,,y", "--model-out", "{root}/m"], 2,
         "expected COL[,COL...]"),
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
    ids=["negative-tol", "k-not-int", "no-model-out", "empty-feature", "txt-input",
         "model-out-exists", "missing-model", "unknown-output-format", "out-exists",
         "unknown-command"],
)
def test_argument_errors_are_one_line(data, capsys, args, status, text):
    """In-process (no Spark starts): every error is one line and a status, no traceback."""
    args = [a.format(root=data["root"], csv=data["csv"]) for a in args]
    try:
        code = cli.main(args)
    except SystemExit as e:  # argparse
        code = e.code
    captured = capsys.readouterr()
    result = subprocess.CompletedProcess(args, code, captured.out, captured.err)
    assert_one_line_error(result, status, text.format(root=data["root"]))


def test_error_line_of_a_python_worker_traceback():
    text = (
        "An exception was thrown from the Python worker. Please see the stack trace below.\n"
        "Traceback (most recent call last):\n"
        '  File "/x/worker.py", line 1, in main\n'
        "ValueError: The features have length 3 but the model was fitted on 2 features.\n"
    )
    assert cli._first_line(text) == (
        "ValueError: The features have length 3 but the model was fitted on 2 features."
    )
    assert cli._first_line("[PATH_NOT_FOUND] Path does not exist: file:/a.csv. SQLSTATE: 42K03"
                           ) == "[PATH_NOT_FOUND] Path does not exist: file:/a.csv."


# -- help and entry points ------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["fit"], ["predict"], ["demo"], ["bench"]],
                         ids=lambda c: c[0] if c else "top")
def test_help(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(" ".join(["usage: sparkml-lloyd", *command]))
    assert "--master URL" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_console_script_is_installed():
    script = shutil.which("sparkml-lloyd", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the sparkml-lloyd script is not installed next to this Python")
    result = subprocess.run([script, "predict", "--help"], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: sparkml-lloyd predict")


# -- bench (in-process: the runner is a stand-in written here) -------------------------


@pytest.fixture
def isolated(monkeypatch):
    """Undo what loading a runner changes: sys.path, sys.modules, PYTHONPATH."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    yield monkeypatch
    sys.modules.pop("_sparkml_lloyd_bench_run", None)


def test_bench_passes_arguments_to_the_runner(tmp_path, isolated):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "run.py").write_text(
        "SEEN = []\n"
        "def main(argv=None):\n"
        "    SEEN.append(list(argv))\n"
        "    print('runner got', argv)\n"
        "    return 3\n"
    )
    isolated.chdir(tmp_path)
    status = cli.main(["--master", "local[1]", "bench", "--grid", "smoke", "--repeats", "1"])
    assert status == 3
    assert sys.modules["_sparkml_lloyd_bench_run"].SEEN == [
        ["--master", "local[1]", "--grid", "smoke", "--repeats", "1"]
    ]
    assert str(tmp_path) in os.environ["PYTHONPATH"].split(os.pathsep)


def test_bench_without_runner_is_one_line(isolated, capsys):
    isolated.setattr(cli, "find_bench_runner", lambda: None)
    assert cli.main(["bench", "--grid", "smoke"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("sparkml-lloyd: error: benchmarks/run.py was not found")
