"""A Spark Connect client for the tests, run in its own process (as a user's would be):
``python -m tests.connect_client URL SCENARIO ARG``. It prints one JSON line of results,
which tests/test_connect.py compares with independent oracles and with the classic backend.

(A Connect session makes pyspark's ``is_remote()`` true for the whole process, so Connect
clients do not share the test session's process.)

Scenarios: ``api FOLDER`` (everything a user does, once each; saves under FOLDER) and
``long COPIES`` (a fit of many iterations, for the fault tests). :func:`run` and
:func:`start` launch it (the tests' side).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

ROOT = Path(__file__).resolve().parents[1]


def start(url: str, scenario: str, arg: str) -> subprocess.Popen[str]:
    """This module as a client process of its own, against the server at ``url``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    return subprocess.Popen([sys.executable, "-m", "tests.connect_client", url, scenario, arg],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def result(proc: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    """The JSON result of a client :func:`start` gave (it must succeed; else the head of its
    errors, where the exception's name is)."""
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    why = [ln for ln in err.splitlines()  # Spark's reason may follow a long plan
           if any(w in ln for w in ("Error", "Exception:", "Reason", "failed", "Caused by"))]
    assert proc.returncode == 0 and lines, "\n".join(why[:40]) or err[:3000]
    return json.loads(lines[-1][len("RESULT "):])


def run(url: str, scenario: str, arg: str, timeout: float = 600) -> dict[str, Any]:
    """Run one scenario in a client process and return its result."""
    proc = start(url, scenario, arg)
    try:
        return result(proc, timeout)
    finally:
        proc.kill()


def data() -> dict[str, Any]:
    """The inputs of the ``api`` scenario (the tests rebuild them for the classic fits)."""
    from sklearn.datasets import make_blobs

    walk, _ = make_blobs(n_samples=1500, random_state=8)
    blobs, _ = make_blobs(n_samples=900, centers=4, n_features=3, random_state=3)
    weights = np.random.default_rng(1).uniform(0.1, 3.0, len(blobs))
    return {"walk": walk, "blobs": blobs + 10.0, "weights": weights}


def frames(spark: Any, d: dict[str, Any]) -> dict[str, Any]:
    from pyspark.ml.linalg import Vectors

    blobs = d["blobs"]
    return {
        "walk": spark.createDataFrame([(i, Vectors.dense(r)) for i, r in enumerate(d["walk"])],
                                      ["id", "features"]),
        "blobs": spark.createDataFrame(
            [(i, Vectors.dense(r), float(w)) for i, (r, w) in enumerate(zip(blobs, d["weights"],
                                                                            strict=True))],
            ["id", "features", "weight"]),
        "arrays": spark.createDataFrame([(i, r.tolist()) for i, r in enumerate(blobs)],
                                        "id int, features array<double>"),
    }


def _model(m: Any) -> dict[str, Any]:
    s = m.summary
    return {"centers": [c.tolist() for c in m.clusterCenters()], "numIter": s.numIter,
            "sizes": s.clusterSizes, "cost": s.trainingCost, "converged": s.converged,
            "costHistory": s.costHistory,
            "iterations": [[r.iteration, r.cost, r.maxMove, r.clusterSizes]
                           for r in s.iterations]}


def fits() -> dict[str, Any]:
    """The fits of the ``api`` scenario: name -> (frame, params); the tests run them classic."""
    d = data()
    return {
        "walkthrough": ("walk", {"k": 3, "initialCenters": d["walk"][:3], "tol": 0.0,
                                 "maxIter": 20}),
        "kmeans||": ("blobs", {"k": 4, "seed": 5, "maxIter": 30}),
        "random": ("blobs", {"k": 4, "seed": 5, "initMode": "random", "maxIter": 30}),
        "weighted cosine": ("blobs", {"k": 4, "initialCenters": d["blobs"][:4], "tol": 0.0,
                                      "weightCol": "weight", "distanceMeasure": "cosine"}),
        "arrays": ("arrays", {"k": 4, "initialCenters": d["blobs"][:4], "tol": 0.0}),
    }


def many() -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """The ``api`` scenario's fitMultiple: frame, shared params, param maps (by name)."""
    return "blobs", {"seed": 5, "maxIter": 30, "weightCol": "weight"}, [
        {"k": 3}, {"k": 4, "initMode": "random"}, {"k": 5, "tol": 0.5},
        {"k": 4, "distanceMeasure": "cosine"}, {"k": 6, "maxIter": 3}]


def api(spark: Any, folder: str, url: str) -> dict[str, Any]:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.linalg import Vectors
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    from sparkml_lloyd import LloydKMeans, LloydKMeansModel

    d = data()
    df = frames(spark, d)
    out: dict[str, Any] = {"session": type(spark).__module__}
    records: list[Any] = []
    models = {}
    for name, (frame, params) in fits().items():
        est = LloydKMeans(**params)
        if name == "walkthrough":
            est.setIterationCallback(lambda r, c: records.append((r.iteration, c.tolist())))
        models[name] = est.fit(df[frame])
        out[name] = _model(models[name])
    out["callback"] = records
    walk = models["walkthrough"]
    out["transform"] = [r.prediction for r in walk.transform(df["walk"]).orderBy("id").collect()]
    out["predict"] = walk.predict(Vectors.dense([0.0, 0.0]))
    out["spark model"] = [r.prediction for r in
                          walk.toSparkModel().transform(df["walk"]).orderBy("id").collect()]
    walk.write().overwrite().save(f"{folder}/model")
    LloydKMeans(k=7, tol=0.5).write().overwrite().save(f"{folder}/estimator")
    loaded = LloydKMeansModel.load(f"{folder}/model")
    estimator = LloydKMeans.load(f"{folder}/estimator")
    out["loaded"] = {"centers": [c.tolist() for c in loaded.clusterCenters()],
                     "estimator": [estimator.getK(), estimator.getTol()]}
    raw = spark.createDataFrame([(float(x), float(y)) for x, y in d["walk"]], ["x", "y"])
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["x", "y"], outputCol="features"),
                                LloydKMeans(k=3, initialCenters=d["walk"][:3], tol=0.0)])
    pipeline.fit(raw).write().overwrite().save(f"{folder}/pipeline")
    reloaded = PipelineModel.load(f"{folder}/pipeline")
    out["pipeline"] = [r.prediction for r in reloaded.transform(raw).collect()]
    km = LloydKMeans(seed=1)
    grid = ParamGridBuilder().addGrid(km.k, [2, 3, 4]).build()
    cv = CrossValidator(estimator=km, estimatorParamMaps=grid, evaluator=ClusteringEvaluator(),
                        numFolds=2, seed=3).fit(df["walk"])
    out["cross validation"] = {"k": cv.bestModel.getK(), "metrics": list(cv.avgMetrics)}
    frame, shared, maps = many()
    est = LloydKMeans(**shared)
    fitted = dict(est.fitMultiple(df[frame], [{est.getParam(n): v for n, v in m.items()}
                                              for m in maps]))
    out["fit multiple"] = [_model(fitted[i]) for i in range(len(maps))]
    from sparkml_lloyd import sweep

    swept = sweep(df["walk"], range(2, 7), estimator=LloydKMeans(seed=1))
    out["sweep"] = {"k": swept.suggested_k, "costs": [r.cost for r in swept.rows],
                    "silhouettes": [r.silhouette for r in swept.rows]}
    out["cli"] = _cli(folder, d["walk"], spark, url)
    bad = spark.createDataFrame([(Vectors.dense([0.0, 1.0]),), (Vectors.dense([np.nan, 1.0]),),
                                 (Vectors.dense([5.0, 5.0]),)], ["features"])
    try:
        LloydKMeans(k=2).fit(bad)
        out["invalid"] = None
    except ValueError as e:
        out["invalid"] = str(e)
    out["row rule"] = row_rule_outcomes(spark)
    kept = LloydKMeans(k=2, seed=1, handleInvalid="keep").fit(bad)
    out["kept"] = sorted(("null" if r.prediction is None else "row")
                         for r in kept.transform(bad).collect())
    return out


#: Feature rows of every kind the row rule judges (valid, null, wrong length, NaN, +-Inf, and
#: all zeros: invalid under cosine only), with ids 0..7.
ROW_CASES = [[0.0, 1.0], None, [1.0], [float("nan"), 1.0], [float("inf"), 0.0],
             [-float("inf"), 0.0], [5.0, 5.0], [0.0, 0.0]]


def row_rule_models() -> dict[str, tuple[list[list[float]], str]]:
    """Models whose transform takes each path: k x d below the Arrow UDF's threshold (Spark's
    model; on Connect, on the server), and above it (the Arrow UDF)."""
    far = [[1000.0 + i, -1000.0 - i] for i in range(1248)]
    return {"small": ([[0.0, 0.0], [5.0, 5.0]], "euclidean"),
            "cosine": ([[1.0, 0.0], [0.0, 1.0]], "cosine"),
            "large": ([[0.0, 0.0], [5.0, 5.0], *far], "euclidean")}


def row_rule_outcomes(spark: Any) -> dict[str, Any]:
    """For every model x column type x handleInvalid: which path ran, the ``(id,
    prediction)`` rows or the error's text. The tests run it on the classic session too."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from sparkml_lloyd import LloydKMeansModel

    arrays = spark.createDataFrame(list(enumerate(ROW_CASES)), "id long, features array<double>")
    column = F.col("features")
    frames = {"array": arrays, "vector": arrays.withColumn(
        "features", F.when(column.isNotNull(), array_to_vector(column)))}
    out: dict[str, Any] = {}
    for name, (centers, distance) in row_rule_models().items():
        model = LloydKMeansModel(centers)
        model.set(model.distanceMeasure, distance)
        for column, frame in frames.items():
            # the path, from the plan under "keep" (Spark may evaluate a projection of local
            # rows while planning it, which under "error" raises there)
            kept = model.setHandleInvalid("keep").transform(frame)
            plan = (kept._explain_string() if hasattr(kept, "_explain_string")
                    else kept._jdf.queryExecution().executedPlan().toString())
            for mode in ("keep", "skip", "error"):
                result = model.setHandleInvalid(mode).transform(frame)
                try:
                    rows, error = [list(r) for r in result.select("id", "prediction")
                                   .orderBy("id").collect()], None
                except Exception as e:
                    rows, error = None, str(e)
                out[f"{name} {column} {mode}"] = {
                    "path": "arrow" if "ArrowEvalPython" in plan else "jvm",
                    "rows": rows, "error": error}
    return out


def _cli(folder: str, points: np.ndarray, spark: Any, url: str) -> dict[str, Any]:
    """``sparkml-lloyd fit`` and ``predict`` with ``--remote`` (on this process's session)."""
    from sparkml_lloyd.cli import main

    csv = f"{folder}/points.csv"
    with open(csv, "w") as f:
        f.write("x,y\n" + "".join(f"{float(x)!r},{float(y)!r}\n" for x, y in points))
    fit = main(["fit", csv, "--k", "3", "--tol", "0", "--model-out", f"{folder}/cli-model",
                "--remote", url])
    predict = main(["predict", csv, "--model", f"{folder}/cli-model", "--out",
                    f"{folder}/cli-out.parquet", "--remote", url])
    rows = spark.read.parquet(f"{folder}/cli-out.parquet").collect()
    return {"status": [fit, predict], "rows": len(rows),
            "sizes": sorted(np.bincount([r.prediction for r in rows]).tolist())}


def long(spark: Any, copies: str, url: str) -> dict[str, Any]:
    """A fit of 320 iterations (tests/fits.py's staircase: Lloyd moves one point a step),
    its heavy point split into ``copies`` rows made on the server: several seconds, for
    killing things in the middle of it. The features are an ``array<double>`` column: a
    vector column made on the server (``array_to_vector``) makes each executor initialise
    Spark's ML function registry in the barrier task, and a Spark Connect executor whose
    class fetch from the server is cut off mid-initialisation (the other executor's kill
    fails the stage) keeps that class broken for every retry (NoClassDefFoundError), which
    is Spark's, not the fit's; see docs/reliability.md."""
    from pyspark.sql import functions as F

    from sparkml_lloyd import LloydKMeans
    from tests.fits import STAIRCASE_PARAMS, staircase

    x, w = staircase(320)
    n = int(float(copies))
    steps = len(x) - 1  # the last point is the heavy one, split into n rows below
    row = F.col("id")
    value = F.when(row < steps, F.element_at(F.array(*map(F.lit, x[:-1].tolist())),
                                             (row + 1).cast("int"))).otherwise(float(x[-1]))
    weight = F.when(row < steps, F.lit(1.0)).otherwise(float(w[-1]) / n)
    # one stage (a range, no union): the fit's barrier job has no other
    df = spark.range(steps + n).select(F.array(value).alias("features"),
                                       weight.alias("weight"))
    return _model(LloydKMeans(**STAIRCASE_PARAMS).fit(df))


def main(argv: list[str]) -> int:
    from pyspark.sql import SparkSession

    url, scenario, arg = argv
    spark = SparkSession.builder.remote(url).getOrCreate()
    try:
        result = {"api": api, "long": long}[scenario](spark, arg, url)
    finally:
        spark.stop()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
