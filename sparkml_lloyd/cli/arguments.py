"""The arguments of ``sparkml-lloyd``: the parser of every command, and the split of a
``bench`` command line (whose arguments belong to the benchmark runner). No Spark here."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from sparkml_lloyd._rows import HANDLE_INVALID

__all__ = ["DEFAULT_MASTER", "PROG", "bench_parser", "build_parser", "split_bench"]

PROG = "sparkml-lloyd"
DEFAULT_MASTER = "local[*]"

#: The ``bench`` command's texts, shared by the subcommand and :func:`bench_parser`.
_BENCH = {
    "description": "Run the benchmarks of a source checkout (python -m benchmarks.run, from "
    "the folder holding benchmarks/run.py: the current directory, else the checkout the "
    "package is installed from). Every argument after 'bench' is passed to the runner "
    "unchanged, and --master given before 'bench' is passed on too; the exit status is "
    "the runner's.",
    "epilog": f"'{PROG} bench --help' also prints the options of benchmarks/run.py when it "
    "is found.",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``sparkml-lloyd: error: ...``."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog[len(PROG):].strip()
        where = f"{sub}: " if sub else ""
        self.exit(2, f"{PROG}: error: {where}{message} (see '{self.prog} --help')\n")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _columns(text: str) -> list[str]:
    cols = [c.strip() for c in text.split(",")]
    if not all(cols):
        raise argparse.ArgumentTypeError(f"expected COL[,COL...], got {text!r}")
    return cols


def _common() -> argparse.ArgumentParser:
    """``--master``/``--remote`` and ``--verbose``, which every command takes, before or after
    its name (their defaults are SUPPRESS so that a value given before the command is kept)."""
    common = _Parser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument(
        "--master", metavar="URL", default=argparse.SUPPRESS,
        help=f"Spark master URL (default: {DEFAULT_MASTER}, an embedded local Spark on all "
        "cores; e.g. spark://host:7077 for a standalone cluster)",
    )
    where.add_argument(
        "--remote", metavar="URL", default=argparse.SUPPRESS,
        help="a Spark Connect server instead of an embedded Spark (e.g. sc://host:15002); "
        "paths are the server's",
    )
    common.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="show Spark's own log output (by default Spark is silent and only this "
        "command's lines are printed)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sparkml-lloyd`` and its subcommands."""
    common = _common()
    parser = _Parser(
        prog=PROG, parents=[common],
        description="Lloyd's k-means on Spark: fit a model, apply it, run the walkthrough "
        "demo or the benchmarks.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_fit(sub.add_parser(
        "fit", parents=[common], help="fit k-means on a CSV or Parquet file, save the model",
        description="Fit LloydKMeans on INPUT and save a PipelineModel (VectorAssembler + "
        "LloydKMeansModel) that 'predict' applies to the raw columns. Prints one line per "
        "iteration, then a summary.",
    ))
    _add_predict(sub.add_parser(
        "predict", parents=[common], help="add a prediction column with a saved model",
        description="Apply a model saved by 'fit' to INPUT and write INPUT's rows plus a "
        "'prediction' column (the cluster index) to OUTPUT. A .csv OUTPUT on the local file "
        "system is one CSV file with a header (on a cluster file system, a folder of one "
        "part file); a .parquet OUTPUT is a Parquet folder.",
    ))
    _add_sweep(sub.add_parser(
        "sweep", parents=[common], help="fit a range of k; cost, silhouette, a suggested k",
        description="Fit LloydKMeans on INPUT for every k of --k, all models in the same "
        "passes over the data; print cost (the elbow), silhouette (Spark's "
        "ClusteringEvaluator on a seeded sample), iterations per k and the k at the knee "
        "of the cost curve, or that there is no clear knee; write sweep.csv and sweep.png "
        "to --out.",
    ))
    demo = sub.add_parser(
        "demo", parents=[common], help="run the original Spark k-means walkthrough",
        description="Reproduce the walkthrough (1,500 make_blobs points, the first 3 as "
        "initial centers, tol=0) on Spark: print every iteration and write PNG figures. "
        'Needs the demo extra: pip install "sparkml-lloyd[demo]".',
    )
    demo.add_argument("--out", default="demo-output", metavar="DIR",
                      help="folder for the figures (default: ./demo-output)")
    sub.add_parser("bench", parents=[common], help="run the benchmarks (benchmarks/run.py)",
                   **_BENCH)
    clean = sub.add_parser(
        "clean", parents=[common], help="delete block files left on this host",
        description="Delete this user's block files on this host (in /dev/shm and the temp "
        "dir) whose Spark JVM has ended, and say what was freed. Starts no Spark.",
    )
    clean.add_argument("--all", action="store_true", dest="include_live",
                       help="also the files of JVMs still running (a running fit recomputes "
                       "them)")
    return parser


def bench_parser() -> argparse.ArgumentParser:
    """The ``bench`` command's own parser, for its help (its arguments are the runner's)."""
    return _Parser(prog=f"{PROG} bench", parents=[_common()], **_BENCH)


def _add_fit(fit: argparse.ArgumentParser) -> None:
    fit.add_argument("input", metavar="INPUT",
                     help="a CSV file with a header line (.csv; types are inferred) or a "
                     "Parquet file or folder (.parquet, .pq)")
    fit.add_argument("--k", type=int, required=True, help="number of clusters (> 1)")
    _add_model_options(fit)
    fit.add_argument("--model-out", required=True, metavar="DIR",
                     help="folder to save the fitted PipelineModel to")
    fit.add_argument("--overwrite", action="store_true",
                     help="replace --model-out if it exists")


def _add_sweep(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("input", metavar="INPUT",
                       help="a CSV file with a header line (.csv) or a Parquet file or "
                       "folder (.parquet, .pq)")
    add_sweep_arguments(sweep)
    _add_model_options(sweep)


def k_range(text: str) -> list[int]:
    """``--k``: ``LO:HI`` (both included) or a comma list, every k at least 2."""
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":"))
            ks = list(range(lo, hi + 1))
        else:
            ks = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give LO:HI (e.g. 2:20) or a list (e.g. 2,4,8)") from None
    if len(ks) < 1 or min(ks) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: every k must be at least 2")
    return sorted(set(ks))


def add_sweep_arguments(sweep: argparse.ArgumentParser) -> None:
    """The ``sweep`` command's own options (the fit options it shares are the caller's)."""
    sweep.add_argument("--k", type=k_range, required=True, metavar="LO:HI",
                       help="the values of k: LO:HI (both included) or a list, e.g. 2:20")
    sweep.add_argument("--silhouette-sample", type=int, default=10_000, metavar="N",
                       help="rows of the seeded sample the silhouette is computed on "
                       "(default 10000; all rows when there are fewer)")
    sweep.add_argument("--out", required=True, metavar="DIR",
                       help="folder for sweep.csv (a row per k) and sweep.png (cost and "
                       "silhouette against k; needs matplotlib)")


def _add_model_options(fit: argparse.ArgumentParser) -> None:
    """The LloydKMeans options ``fit`` and ``sweep`` share."""
    fit.add_argument("--features", type=_columns, metavar="COL[,COL...]",
                     help="feature columns (default: every numeric column except the "
                     "weight column)")
    fit.add_argument("--max-iter", type=_non_negative_int, default=20, metavar="N",
                     help="maximum number of iterations (default: 20)")
    fit.add_argument("--tol", type=float, default=1e-4, metavar="T",
                     help="stop when no center moves more than T (default: 1e-4; 0 stops "
                     "when no point changes cluster)")
    fit.add_argument("--init", choices=["k-means||", "random"], default="k-means||",
                     help="initialisation (default: k-means||)")
    fit.add_argument("--seed", type=int, default=None, metavar="S",
                     help="random seed of the initialisation (default: a fixed number)")
    fit.add_argument("--weight-col", metavar="COL", help="numeric column of row weights")
    fit.add_argument("--distance", choices=["euclidean", "cosine"], default="euclidean",
                     help="distance measure (default: euclidean)")
    fit.add_argument("--handle-invalid", choices=HANDLE_INVALID, default="error",
                     help="rows with a null, NaN or infinite feature (or all zeros under "
                     "cosine): 'error' stops the fit (default), 'skip' and 'keep' leave "
                     "them out of it; the saved model then drops them ('skip') or gives "
                     "them an empty prediction ('keep') in 'predict'")


def _add_predict(predict: argparse.ArgumentParser) -> None:
    predict.add_argument("input", metavar="INPUT", help="CSV (.csv) or Parquet (.parquet) input")
    predict.add_argument("--model", required=True, metavar="DIR",
                         help="a model saved by 'sparkml-lloyd fit'")
    predict.add_argument("--out", required=True, metavar="OUTPUT",
                         help="output path; the format follows the extension: .csv or .parquet")
    predict.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


def split_bench(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``(argv up to 'bench', the arguments after it)``, or ``(argv, None)`` for another
    command. argparse cannot pass unknown options through, so this split is done by hand."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("--master", "--remote"):
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        if token == "bench":
            return argv[: i + 1], argv[i + 1:]
        break
    return argv, None
