"""Choosing k, measured: a k sweep and a CrossValidator, ours against Spark's KMeans.

``python -m benchmarks.choosing_k [--smoke]`` on one local session, one cached dataset
(Gaussian blobs of :mod:`benchmarks.datagen`), every fit with ``tol=0`` and the same
``maxIter`` (so each runs ``maxIter`` iterations on every side: the same work per k):

* **sweep**: k = 2..20 (smoke: 2..5) fitted (a) with Spark's ``KMeans`` once per k, (b) with
  ``LloydKMeans`` once per k, one after another, (c) with ``LloydKMeans.fitMultiple`` (the
  data prepared once, every model in the same passes). Ratios (c)/(a) and (c)/(b); the models
  of (c) must equal those of (b) (centers at 1e-12, same iterations).
* **CrossValidator**: 3 folds over 4 param maps (k = 5, 10, 15, 20; smoke: 2 maps), Spark's
  ``ClusteringEvaluator``, ours against Spark's ``KMeans``; the ratio of the wall times.

Writes ``benchmarks/results/choosing-k-<UTC stamp>.json`` (``--out``) and prints the rows
docs/benchmarks.md shows. Measure on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import datagen
from benchmarks import record as R
from benchmarks.grid import Cell
from benchmarks.measure import relative_difference

RESULTS = Path(__file__).resolve().parent / "results"
FULL = {"n": 1_000_000, "d": 20, "groups": 10, "ks": list(range(2, 21)), "max_iter": 20,
        "cv_ks": [5, 10, 15, 20], "folds": 3}
SMOKE = {"n": 20_000, "d": 5, "groups": 4, "ks": [2, 3, 4, 5], "max_iter": 5,
         "cv_ks": [3, 4], "folds": 3}


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def sweep_rows(spark: Any, df: Any, spec: dict[str, Any], seed: int) -> dict[str, Any]:
    from pyspark.ml.clustering import KMeans

    from sparkml_lloyd import LloydKMeans

    ks, max_iter = spec["ks"], spec["max_iter"]
    spark_s, spark_models = _timed(lambda: [
        KMeans(k=k, maxIter=max_iter, tol=0.0, seed=seed).fit(df) for k in ks])
    ours = LloydKMeans(maxIter=max_iter, tol=0.0, seed=seed)
    one_by_one_s, singles = _timed(lambda: [ours.copy({ours.k: k}).fit(df) for k in ks])
    together_s, together = _timed(lambda: dict(ours.fitMultiple(df, [{ours.k: k} for k in ks])))
    worst = max(relative_difference(np.array(together[i].clusterCenters()),
                                    np.array(m.clusterCenters())) for i, m in enumerate(singles))
    same_iterations = all(together[i].summary.numIter == m.summary.numIter
                          for i, m in enumerate(singles))
    return {
        "ks": ks, "max_iter": max_iter,
        "spark_kmeans_seconds": spark_s, "ours_one_by_one_seconds": one_by_one_s,
        "ours_fit_multiple_seconds": together_s,
        "ratio_vs_spark": together_s / spark_s, "ratio_vs_one_by_one": together_s / one_by_one_s,
        "spark_iterations": [m.summary.numIter for m in spark_models],
        "ours_iterations": [m.summary.numIter for m in singles],
        "centers_vs_single_fits": worst, "same_iterations": same_iterations,
    }


def cv_rows(df: Any, spec: dict[str, Any], seed: int) -> dict[str, Any]:
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    from sparkml_lloyd import LloydKMeans

    out: dict[str, Any] = {"ks": spec["cv_ks"], "folds": spec["folds"]}
    for name, est in (("spark_kmeans", KMeans(maxIter=spec["max_iter"], tol=0.0, seed=seed)),
                      ("ours", LloydKMeans(maxIter=spec["max_iter"], tol=0.0, seed=seed))):
        grid = ParamGridBuilder().addGrid(est.k, spec["cv_ks"]).build()
        cv = CrossValidator(estimator=est, estimatorParamMaps=grid,
                            evaluator=ClusteringEvaluator(), numFolds=spec["folds"], seed=seed)
        seconds, model = _timed(lambda cv=cv: cv.fit(df))
        out[f"{name}_seconds"] = seconds
        out[f"{name}_metrics"] = list(model.avgMetrics)
        out[f"{name}_best_k"] = model.bestModel.getK()
    out["ratio"] = out["ours_seconds"] / out["spark_kmeans_seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.choosing_k", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/)")
    args = p.parse_args(argv)
    spec = SMOKE if args.smoke else FULL

    from sparkml_lloyd.session import local_session

    spark = local_session(args.master, app_name="sparkml_lloyd-bench-choosing-k",
                          conf={"spark.driver.memory": "2g" if args.smoke else "12g",
                                "spark.sql.shuffle.partitions": "2",
                                "spark.default.parallelism": "2"})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_path = args.out or RESULTS / f"choosing-k-{stamp}.json"
    try:
        data = datagen.generate(spark, Cell(spec["n"], spec["d"], spec["groups"]), args.seed, 2)
        record: dict[str, Any] = {"kind": "choosing-k", "smoke": args.smoke, "spec": spec,
                                  "environment": R.environment(spark)}
        record["sweep"] = sweep_rows(spark, data.df, spec, args.seed)
        record["cross_validator"] = cv_rows(data.df, spec, args.seed)
        data.unpersist()
    finally:
        spark.stop()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=1))
    s, c = record["sweep"], record["cross_validator"]
    print(f"sweep k={s['ks'][0]}..{s['ks'][-1]} at (n, d) = ({spec['n']:g}, {spec['d']}): "
          f"Spark KMeans per k {s['spark_kmeans_seconds']:.1f} s, ours one by one "
          f"{s['ours_one_by_one_seconds']:.1f} s, fitMultiple {s['ours_fit_multiple_seconds']:.1f}"
          f" s: {s['ratio_vs_spark']:.2f}x Spark, {s['ratio_vs_one_by_one']:.2f}x one by one; "
          f"centers vs single fits {s['centers_vs_single_fits']:.1e}, same iterations "
          f"{s['same_iterations']}")
    print(f"CrossValidator {c['folds']} folds x {len(c['ks'])} maps: Spark KMeans "
          f"{c['spark_kmeans_seconds']:.1f} s, ours {c['ours_seconds']:.1f} s: "
          f"{c['ratio']:.2f}x")
    print(f"results: {out_path}")
    return 0 if s["centers_vs_single_fits"] <= 1e-12 and s["same_iterations"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
