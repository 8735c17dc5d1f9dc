"""``sweep``: fit a range of k on a file, print the elbow and silhouette table, suggest k."""

from __future__ import annotations

import argparse
import os

from sparkml_lloyd.cli import files
from sparkml_lloyd.cli.commands import estimator_of, feature_columns, free_name
from sparkml_lloyd.cli.errors import UsageError
from sparkml_lloyd.cli.spark_session import CommandSession

__all__ = ["sweep"]


def sweep(args: argparse.Namespace, spark: CommandSession) -> int:
    """``sweep``: one model per k in the same passes, a table, the knee, a CSV and a PNG."""
    from pyspark.ml.feature import VectorAssembler

    from sparkml_lloyd.choosing_k import sweep as run_sweep

    estimator = estimator_of(args, k=args.k[0])
    if args.silhouette_sample < 2:
        raise UsageError("--silhouette-sample: at least 2 rows")
    fmt = files.check_input(args.input)
    if os.path.isfile(args.out):
        raise UsageError(f"--out {args.out!r} is a file; give a folder")
    df = files.read(spark.get(), args.input, fmt)
    features = feature_columns(df, args.features, args.weight_col, f"input {args.input!r}")
    vector_col = free_name(df.columns, "features")
    assembler = VectorAssembler(inputCols=features, outputCol=vector_col, handleInvalid="keep")
    data = assembler.transform(df)
    estimator.setFeaturesCol(vector_col)
    ks = args.k
    print(f"fitting k={ks[0]}..{ks[-1]} ({len(ks)} models in the same passes) on "
          f"{args.input} with features: {', '.join(features)}", flush=True)
    result = run_sweep(data, ks, estimator=estimator, silhouette_sample=args.silhouette_sample)
    print(f"{'k':>4} {'cost':>14} {'silhouette':>10} {'iterations':>10}  converged")
    for r in result.rows:
        print(f"{r.k:>4} {r.cost:>14.6g} {r.silhouette:>10.4f} {r.iterations:>10}  "
              f"{'yes' if r.converged else 'no'}")
    print(f"silhouette on {result.sample_rows} rows; {result.seconds:.1f} s in all")
    print(result.knee.reason)
    print(f"suggested k: {result.suggested_k if result.suggested_k is not None else 'none'}")
    os.makedirs(args.out, exist_ok=True)
    table = os.path.join(args.out, "sweep.csv")
    result.to_pandas().to_csv(table, index=False)
    figure = os.path.join(args.out, "sweep.png")
    try:
        result.plot(figure)
    except ImportError as e:
        print(f"{table} written; no figure: {e}")
        return 0
    print(f"{table} and {figure} written")
    return 0
