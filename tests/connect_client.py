"""A Spark Connect client for the tests, run in its own process (as a user's would be):
``python -m tests.connect_client URL SCENARIO FOLDER``. It prints one JSON line of results,
which tests/test_connect.py compares with independent oracles and with the classic backend.

(A Connect session makes pyspark's ``is_remote()`` true for the whole process, so Connect
clients do not share the test session's process.)

Scenarios: ``api`` (everything a user does, once each) and ``long`` (a fit of many
iterations, for the fault tests).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import numpy as np

warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


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


def api(spark: Any, folder: str) -> dict[str, Any]:
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
    bad = spark.createDataFrame([(Vectors.dense([0.0, 1.0]),), (Vectors.dense([np.nan, 1.0]),),
                                 (Vectors.dense([5.0, 5.0]),)], ["features"])
    try:
        LloydKMeans(k=2).fit(bad)
        out["invalid"] = None
    except ValueError as e:
        out["invalid"] = str(e)
    kept = LloydKMeans(k=2, seed=1, handleInvalid="keep").fit(bad)
    out["kept"] = sorted(("null" if r.prediction is None else "row")
                         for r in kept.transform(bad).collect())
    return out


def long(spark: Any, folder: str) -> dict[str, Any]:
    """A fit of many iterations (about 10 s here) on a staircase of points where Lloyd moves
    one point a step: for killing things in the middle of it."""
    from pyspark.ml.linalg import Vectors

    from sparkml_lloyd import LloydKMeans

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (20000, 4)), rng.normal(3, 1, (20000, 4))])
    df = spark.createDataFrame([(Vectors.dense(r),) for r in x], ["features"]).repartition(2)
    model = LloydKMeans(k=8, initialCenters=x[:8], tol=0.0, maxIter=int(folder or 300)).fit(df)
    return _model(model)


def main(argv: list[str]) -> int:
    from pyspark.sql import SparkSession

    url, scenario, folder = argv
    spark = SparkSession.builder.remote(url).getOrCreate()
    try:
        result = {"api": api, "long": long}[scenario](spark, folder)
    finally:
        spark.stop()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
