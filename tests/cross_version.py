"""Models saved on one pyspark line, loaded on another (run by :mod:`tests.matrix`).

    python -m tests.cross_version save DIR   # fits and saves models, their centers as .npy
    python -m tests.cross_version load DIR   # loads them (another pyspark), checks, exits 0/1

What ``load`` checks, against what ``save`` wrote beside the models with numpy (not through
Spark): the centers bit for bit, the params, and that ``transform`` of the loaded model puts
every point at its nearest saved center (scikit-learn's ``pairwise_distances_argmin`` is the
oracle), for a bare model (Euclidean), a cosine model and a PipelineModel around one, on
both transform paths (Spark's predict in the JVM for the small model, the numpy kernel in the
columnar UDF for the large one).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import pairwise_distances_argmin

#: name -> (k, d, distance measure); 40 x 200 = 8000 center values is past every line's
#: threshold for the columnar UDF path, 3 x 4 is under it.
MODELS = {"small": (3, 4, "euclidean"), "cosine": (4, 5, "cosine"),
          "large": (40, 200, "euclidean")}


def points(d: int) -> np.ndarray:
    return np.random.default_rng(d).normal(size=(300, d))


def session():  # type: ignore[no-untyped-def]
    from sparkml_lloyd.session import local_session

    return local_session("local[2]", app_name="sparkml_lloyd-cross-version")


def frame(spark, x: np.ndarray):  # type: ignore[no-untyped-def]
    from pyspark.ml.linalg import Vectors

    return spark.createDataFrame([(i, Vectors.dense(row)) for i, row in enumerate(x)],
                                 ["id", "features"])


def save(folder: Path) -> None:
    import pyspark
    from pyspark.ml import Pipeline

    from sparkml_lloyd import LloydKMeans

    spark = session()
    folder.mkdir(parents=True)
    for name, (k, d, distance) in MODELS.items():
        df = frame(spark, points(d))
        model = LloydKMeans(k=k, seed=7, maxIter=5, distanceMeasure=distance).fit(df)
        model.save(str(folder / name))
        np.save(folder / f"{name}.npy", np.array(model.clusterCenters()))
    df = frame(spark, points(4))
    pipeline = Pipeline(stages=[LloydKMeans(k=3, seed=7, predictionCol="cluster")]).fit(df)
    pipeline.save(str(folder / "pipeline"))
    np.save(folder / "pipeline.npy", np.array(pipeline.stages[0].clusterCenters()))
    (folder / "saved-by.json").write_text(json.dumps({"pyspark": pyspark.__version__}))
    spark.stop()


def nearest(x: np.ndarray, centers: np.ndarray, distance: str) -> np.ndarray:
    metric = "cosine" if distance == "cosine" else "euclidean"
    return pairwise_distances_argmin(x, centers, metric=metric)


def load(folder: Path) -> list[str]:
    """The problems found (none: every check passed)."""
    import pyspark
    from pyspark.ml import PipelineModel

    from sparkml_lloyd import LloydKMeansModel

    spark = session()
    saved_by = json.loads((folder / "saved-by.json").read_text())["pyspark"]
    problems = []
    for name, (k, d, distance) in MODELS.items():
        expected = np.load(folder / f"{name}.npy")
        model = LloydKMeansModel.load(str(folder / name))
        centers = np.array(model.clusterCenters())
        if not np.array_equal(centers, expected):
            problems.append(f"{name}: centers differ")
        if (model.getK(), model.getDistanceMeasure(), model.getSeed()) != (k, distance, 7):
            problems.append(f"{name}: params differ")
        x = points(d)
        rows = model.transform(frame(spark, x)).orderBy("id").collect()
        got = np.array([r.prediction for r in rows])
        if not np.array_equal(got, nearest(x, expected, distance)):
            problems.append(f"{name}: transform does not assign the nearest saved center")
    pipeline = PipelineModel.load(str(folder / "pipeline"))
    x = points(4)
    rows = pipeline.transform(frame(spark, x)).orderBy("id").collect()
    expected = np.load(folder / "pipeline.npy")
    if not np.array_equal([r.cluster for r in rows], nearest(x, expected, "euclidean")):
        problems.append("pipeline: transform does not assign the nearest saved center")
    spark.stop()
    print(f"saved on pyspark {saved_by}, loaded on {pyspark.__version__}: "
          + ("; ".join(problems) if problems else "ok"))
    return problems


def main(argv: list[str]) -> int:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    command, folder = argv
    if command == "save":
        save(Path(folder))
        return 0
    return 1 if load(Path(folder)) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
