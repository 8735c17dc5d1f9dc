"""The commands that run on Spark: ``fit``, ``predict`` and ``demo``.

Each checks its arguments and files before it asks for the session, so a wrong argument is
reported before Spark starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sparkml_lloyd.cli import files
from sparkml_lloyd.cli.arguments import PROG
from sparkml_lloyd.cli.errors import CliError, UsageError, describe_error
from sparkml_lloyd.cli.spark_session import CommandSession

if TYPE_CHECKING:
    import numpy as np
    from pyspark.sql import DataFrame

    from sparkml_lloyd import IterationRecord

__all__ = ["demo", "fit", "predict"]

PREDICTION_COL = "prediction"


def fit(args: argparse.Namespace, spark: CommandSession) -> int:
    """``fit``: read INPUT, fit a VectorAssembler + LloydKMeans pipeline, printing a line per
    iteration, then a summary; save the PipelineModel."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler

    estimator = estimator_of(args, args.k)
    fmt = files.check_input(args.input)
    files.check_absent(args.model_out, args.overwrite, "--model-out")

    df = files.read(spark.get(), args.input, fmt)
    features = feature_columns(df, args.features, args.weight_col, f"input {args.input!r}")
    vector_col = free_name(df.columns, "features")
    # "keep": a null or NaN feature becomes NaN in the vector, and LloydKMeans's row rule
    # (handleInvalid) decides about the row, in fit and in predict.
    assembler = VectorAssembler(inputCols=features, outputCol=vector_col, handleInvalid="keep")
    estimator.setFeaturesCol(vector_col).setIterationCallback(_print_iteration)
    print(f"fitting k={args.k} on {args.input} with features: {', '.join(features)}", flush=True)

    pipeline_model = Pipeline(stages=[assembler, estimator]).fit(df)
    model = pipeline_model.stages[-1]
    summary = model.summary
    measure = "cosine distances" if args.distance == "cosine" else "squared distances"
    weighted = "weighted " if args.weight_col else ""
    print(f"iterations: {summary.numIter} "
          f"({'converged' if summary.converged else 'stopped at --max-iter'})")
    print(f"training cost: {summary.trainingCost:.10g} ({weighted}sum of {measure} to the "
          "nearest center)")
    print(f"rows: {_rows_used(df, sum(summary.clusterSizes), args.handle_invalid)}; "
          f"cluster sizes: {summary.clusterSizes}")
    print(f"centers ({', '.join(features)}):")
    for i, center in enumerate(model.clusterCenters()):
        print(f"  {i}: {_fmt_vector(center)}")
    writer = pipeline_model.write()
    if args.overwrite:
        writer = writer.overwrite()
    writer.save(args.model_out)
    print(f"model saved to {args.model_out} (a PipelineModel: VectorAssembler + "
          f"LloydKMeansModel); apply it with: {PROG} predict INPUT --model {args.model_out} "
          "--out OUTPUT")
    return 0


def estimator_of(args: argparse.Namespace, k: int) -> Any:
    """The LloydKMeans of the shared model options (``fit``, ``sweep``), checked before
    Spark starts: a wrong value is a usage error."""
    from sparkml_lloyd import LloydKMeans
    from sparkml_lloyd._params import validate

    estimator = LloydKMeans(
        k=k, maxIter=args.max_iter, tol=args.tol, initMode=args.init,
        distanceMeasure=args.distance, handleInvalid=args.handle_invalid,
    )
    if args.seed is not None:
        estimator.setSeed(args.seed)
    if args.weight_col:
        estimator.setWeightCol(args.weight_col)
    try:
        validate(estimator)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return estimator


def _print_iteration(record: IterationRecord, centers: np.ndarray) -> None:
    """The fit's iteration callback: one line per iteration."""
    print(record, flush=True)


def _rows_used(df: DataFrame, used: int, handle_invalid: str) -> str:
    """``"24"``, or ``"24 of 26 (2 invalid rows left out: --handle-invalid skip)"``."""
    if handle_invalid == "error":  # every row was used, or the fit failed
        return str(used)
    left_out = df.count() - used
    if not left_out:
        return str(used)
    return (f"{used} of {used + left_out} ({left_out} invalid "
            f"row{'s' if left_out > 1 else ''} left out: --handle-invalid {handle_invalid})")


def feature_columns(df: DataFrame, requested: list[str] | None, weight: str | None,
                     source: str) -> list[str]:
    """``--features`` checked against ``df``, or every numeric column but ``weight``."""
    from pyspark.sql import types as T

    numeric = [f.name for f in df.schema.fields if isinstance(f.dataType, T.NumericType)]
    if weight is not None and weight not in df.columns:
        raise CliError(
            f"--weight-col {weight!r} is not a column of {source} (columns: "
            f"{', '.join(df.columns)})"
        )
    if requested is None:
        cols = [c for c in numeric if c != weight]
        if not cols:
            raise CliError(
                f"{source} has no numeric column to use as a feature (columns: "
                f"{', '.join(f'{f.name} {f.dataType.simpleString()}' for f in df.schema.fields)})"
            )
        return cols
    missing = [c for c in requested if c not in df.columns]
    if missing:
        raise CliError(
            f"--features: {', '.join(map(repr, missing))} "
            f"{'is not a column' if len(missing) == 1 else 'are not columns'} of {source} "
            f"(columns: {', '.join(df.columns)})"
        )
    wrong = [c for c in requested if c not in numeric]
    if wrong:
        types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
        raise CliError(
            "--features: " + ", ".join(f"{c!r} has type {types[c]}" for c in wrong)
            + "; features must be numeric columns"
        )
    if weight in requested:
        raise UsageError(f"--weight-col {weight!r} cannot also be a feature column")
    return requested


def free_name(columns: Sequence[str], name: str) -> str:
    candidate, i = name, 0
    while candidate in columns:
        i += 1
        candidate = f"{name}_{i}"
    return candidate


def _fmt_vector(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.10g}" for v in values) + "]"


def _quote(col: str) -> str:
    return "`" + col.replace("`", "``") + "`"


def predict(args: argparse.Namespace, spark: CommandSession) -> int:
    """``predict``: apply a model saved by ``fit`` to INPUT, write INPUT's rows plus a
    ``prediction`` column to OUTPUT, and count what was written per cluster."""
    fmt = files.check_input(args.input)
    out_fmt = files.format_of(args.out, "--out")
    files.check_absent(args.out, args.overwrite, "--out")
    if files.is_local(args.model) and not os.path.isdir(files.local_path(args.model)):
        raise CliError(f"--model {args.model!r} does not exist (save one with '{PROG} fit')")

    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import VectorAssembler

    session = spark.get()
    try:
        pipeline_model = PipelineModel.load(args.model)
    except Exception as e:
        raise CliError(
            f"cannot load a model saved by '{PROG} fit' from {args.model!r}: "
            f"{describe_error(e)}"
        ) from None
    df = files.read(session, args.input, fmt)
    if PREDICTION_COL in df.columns:
        raise CliError(
            f"input {args.input!r} already has a column {PREDICTION_COL!r}; rename or drop it"
        )
    needed = [c for s in pipeline_model.stages if isinstance(s, VectorAssembler)
              for c in s.getInputCols()]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise CliError(
            f"input {args.input!r} lacks the column(s) {', '.join(map(repr, missing))} the "
            f"model was fitted on (it needs {', '.join(needed)}; the input has "
            f"{', '.join(df.columns)})"
        )
    out = pipeline_model.transform(df).select(
        *[_quote(c) for c in df.columns], PREDICTION_COL
    )
    what = files.write(out, args.out, args.overwrite)
    counts = {r[0]: int(r[1]) for r in
              files.read(session, args.out, out_fmt).groupBy(PREDICTION_COL).count().collect()}
    none = counts.pop(None, 0)
    sizes = {int(c): n for c, n in sorted(counts.items())}
    unassigned = f"; rows without a prediction (invalid features): {none}" if none else ""
    print(f"wrote {sum(sizes.values()) + none} rows with a {PREDICTION_COL!r} column to "
          f"{args.out} ({what}); rows per cluster: {sizes}{unassigned}")
    return 0


def demo(args: argparse.Namespace, spark: CommandSession) -> int:
    """``demo``: the walkthrough (:func:`sparkml_lloyd.demo.run_demo`) on the session."""
    from sparkml_lloyd.demo import require_plotting, run_demo

    require_plotting()  # a missing extra is reported before Spark starts
    spark.get()
    run_demo(args.out, spark.master)
    return 0


def clean(args: argparse.Namespace, spark: CommandSession) -> int:
    """``clean``: :func:`sparkml_lloyd.clean` on this host (no Spark)."""
    from sparkml_lloyd import clean as clean_blocks

    done = clean_blocks(include_live=args.include_live)
    where = ", ".join(done.directories) or "no block directory"
    print(f"deleted {done.files} block files ({done.bytes / 2**20:.1f} MiB) in {where}")
    if done.live_files:
        print(f"left {done.live_files} files of Spark JVMs still running (--all deletes them)")
    return 0
