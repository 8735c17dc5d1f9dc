"""The ``sparkml-lloyd`` command line (also ``python -m sparkml_lloyd``).

Subcommands: ``fit`` (CSV/Parquet -> saved PipelineModel), ``predict`` (saved model + input ->
output with a ``prediction`` column), ``demo`` (the walkthrough, see :mod:`sparkml_lloyd.demo`)
and ``bench`` (runs ``benchmarks/run.py`` of a source checkout). Every command accepts
``--master URL`` and ``--verbose``; ``sparkml-lloyd COMMAND --help`` describes each.

Errors end the command with one line on stderr, ``sparkml-lloyd: error: ...``, and exit
status 2 for a usage error, 1 for any other failure. Nothing imports or starts Spark before
the arguments have been checked.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["CliError", "UsageError", "build_parser", "main"]

PROG = "sparkml-lloyd"
DEFAULT_MASTER = "local[*]"
PREDICTION_COL = "prediction"
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")

#: log4j2 configuration of a quiet run: Spark's JVM logs off. Failures still reach the
#: command as exceptions, reduced to one line; ``--verbose`` keeps Spark's own logging.
#: (At level ERROR a failed task prints its whole Java stack trace.) The PythonGatewayServer
#: logger is named so that Spark does not announce 'Setting default log level to "WARN"'.
_QUIET_LOG4J2 = """\
rootLogger.level = off
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %p %c{1}: %m%n
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = off
"""
#: Lines the JVM itself prints at start, dropped in a quiet run.
_JVM_NOISE = (b"WARNING: Using incubator modules",)


class CliError(Exception):
    """A failure to report as one line, exit status 1."""


class UsageError(CliError):
    """A wrong argument, reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``sparkml-lloyd: error: ...``."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog[len(PROG):].strip()
        where = f"{sub}: " if sub else ""
        self.exit(2, f"{PROG}: error: {where}{message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sparkml-lloyd`` and its subcommands."""
    # Defaults are SUPPRESS so that --master/--verbose may come before or after the command.
    common = _Parser(add_help=False)
    common.add_argument(
        "--master", metavar="URL", default=argparse.SUPPRESS,
        help=f"Spark master URL (default: {DEFAULT_MASTER}, an embedded local Spark on all "
        "cores; e.g. spark://host:7077 for a standalone cluster)",
    )
    common.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="show Spark's own log output (by default Spark is silent and only this "
        "command's lines are printed)",
    )
    parser = _Parser(
        prog=PROG, parents=[common],
        description="Lloyd's k-means on Spark: fit a model, apply it, run the walkthrough "
        "demo or the benchmarks.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fit = sub.add_parser(
        "fit", parents=[common], help="fit k-means on a CSV or Parquet file, save the model",
        description="Fit LloydKMeans on INPUT and save a PipelineModel (VectorAssembler + "
        "LloydKMeansModel) that 'predict' applies to the raw columns. Prints one line per "
        "iteration, then a summary.",
    )
    fit.add_argument("input", metavar="INPUT",
                     help="a CSV file with a header line (.csv; types are inferred) or a "
                     "Parquet file or folder (.parquet, .pq)")
    fit.add_argument("--k", type=int, required=True, help="number of clusters (> 1)")
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
    fit.add_argument("--model-out", required=True, metavar="DIR",
                     help="folder to save the fitted PipelineModel to")
    fit.add_argument("--overwrite", action="store_true",
                     help="replace --model-out if it exists")

    predict = sub.add_parser(
        "predict", parents=[common], help="add a prediction column with a saved model",
        description="Apply a model saved by 'fit' to INPUT and write INPUT's rows plus a "
        "'prediction' column (the cluster index) to OUTPUT. A .csv OUTPUT on the local file "
        "system is one CSV file with a header (on a cluster file system, a folder of one "
        "part file); a .parquet OUTPUT is a Parquet folder.",
    )
    predict.add_argument("input", metavar="INPUT", help="CSV (.csv) or Parquet (.parquet) input")
    predict.add_argument("--model", required=True, metavar="DIR",
                         help="a model saved by 'sparkml-lloyd fit'")
    predict.add_argument("--out", required=True, metavar="OUTPUT",
                         help="output path; the format follows the extension: .csv or .parquet")
    predict.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")

    demo = sub.add_parser(
        "demo", parents=[common], help="run the original Spark k-means walkthrough",
        description="Reproduce the walkthrough (1,500 make_blobs points, the first 3 as "
        "initial centers, tol=0) on Spark: print every iteration and write PNG figures. "
        'Needs the demo extra: pip install "sparkml-lloyd[demo]".',
    )
    demo.add_argument("--out", default="demo-output", metavar="DIR",
                      help="folder for the figures (default: ./demo-output)")

    sub.add_parser(
        "bench", parents=[common], help="run the benchmarks (benchmarks/run.py)",
        description="Run benchmarks/run.py of a source checkout (looked for in "
        "./benchmarks/, then next to the installed package). Every argument after 'bench' "
        "is passed to it unchanged, and --master given before 'bench' is passed on too.",
        epilog=f"'{PROG} bench --help' also prints the options of benchmarks/run.py when it "
        "is found.",
    )
    return parser


def _split_bench(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``(argv up to 'bench', the arguments after it)``, or ``(argv, None)`` for another
    command. argparse cannot pass unknown options through, so this split is done by hand."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--master":
            i += 2
            continue
        if token.startswith("-"):
            i += 1
            continue
        if token == "bench":
            return argv[: i + 1], argv[i + 1:]
        break
    return argv, None


# --------------------------------------------------------------------------------------
# Spark session and errors
# --------------------------------------------------------------------------------------


def _is_local(path: str) -> bool:
    """Whether ``path`` is on the local file system (no URI scheme, or ``file:``)."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", path)
    return scheme is None or len(scheme.group(1)) == 1 or scheme.group(1).lower() == "file"


def _local_path(path: str) -> str:
    return re.sub(r"^file:(//)?", "", path) if path.lower().startswith("file:") else path


@contextlib.contextmanager
def _drop_jvm_noise() -> Iterator[None]:
    """While the JVM starts, point stderr (fd 2, which it inherits) at a pipe that forwards
    every line except the JDK's own ``WARNING: Using incubator modules`` notice."""
    if os.name != "posix":
        yield
        return
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    real_stderr = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                if not line.startswith(_JVM_NOISE):
                    os.write(real_stderr, line)

    threading.Thread(target=pump, name="sparkml-lloyd-stderr", daemon=True).start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # this process writes to the terminal again; the JVM keeps the pipe


class _Spark:
    """Starts the session on first use (never for --help or an argument error), quiet unless
    --verbose; stops it at the end if it started it."""

    def __init__(self, master: str, verbose: bool) -> None:
        self.master = master
        self.verbose = verbose
        self.session: SparkSession | None = None
        self._owned = False
        self._log_config: str | None = None

    def get(self) -> SparkSession:
        if self.session is None:
            from pyspark.sql import SparkSession

            from sparkml_lloyd.session import local_session

            # A session that exists already (main() called from Python) is used as it is.
            active = SparkSession.getActiveSession()
            if active is not None:
                self.session = active
                return active
            self._owned = True

            conf: dict[str, str] = {}
            if not self.verbose:
                fd, self._log_config = tempfile.mkstemp(prefix="sparkml-lloyd-",
                                                        suffix=".properties")
                with os.fdopen(fd, "w") as f:
                    f.write(_QUIET_LOG4J2)
                conf["spark.driver.extraJavaOptions"] = (
                    f"-Dlog4j2.configurationFile={Path(self._log_config).as_uri()}"
                )
            noise = contextlib.nullcontext() if self.verbose else _drop_jvm_noise()
            with noise:
                self.session = local_session(
                    self.master, app_name=PROG, conf=conf,
                    log_level="WARN" if self.verbose else "OFF",
                )
        return self.session

    def stop(self) -> None:
        if self.session is not None and self._owned:
            with contextlib.suppress(Exception):
                self.session.stop()
        self.session = None
        if self._log_config:
            with contextlib.suppress(OSError):
                os.remove(self._log_config)
            self._log_config = None


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)):\s*(.+)$")


def _first_line(text: str) -> str:
    """The informative line of an error message: the last ``XError: ...`` line of an
    embedded Python traceback, else the first non-empty line; without a SQLSTATE suffix."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[0]
    if "Traceback (most recent call last)" in str(text):
        found = [m for m in map(_EXCEPTION_LINE.match, lines) if m]
        if found:
            name, msg = found[-1].groups()
            line = f"{name.rsplit('.', 1)[-1]}: {msg}"
    return re.sub(r"\s*SQLSTATE: \w+\.?\s*$", "", line)


def _java_root_message(java_exc: Any) -> str:
    """The message of the innermost cause of a Java throwable (one line)."""
    seen = 0
    root = java_exc
    while seen < 20:
        cause = root.getCause()
        if cause is None:
            break
        root, seen = cause, seen + 1
    msg = root.getMessage()
    text = msg if msg else root.toString()
    return _first_line(text)


def describe_error(exc: BaseException) -> str:
    """One line for any exception, without Java or Python stack traces."""
    from py4j.protocol import Py4JError, Py4JJavaError
    from pyspark.errors import PySparkException

    if isinstance(exc, Py4JJavaError):
        try:
            return _java_root_message(exc.java_exception)
        except Exception:
            return _first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, Py4JError):
        return "lost the connection to Spark's JVM (it may have run out of memory or exited)"
    if isinstance(exc, PySparkException):
        text = exc.getMessage() if hasattr(exc, "getMessage") else str(exc)
        return _first_line(text or str(exc)) or type(exc).__name__
    text = _first_line(str(exc))
    if isinstance(exc, (FileNotFoundError, CliError, ImportError)) or not text:
        return text or type(exc).__name__
    return text


# --------------------------------------------------------------------------------------
# Input and output
# --------------------------------------------------------------------------------------


def _format_of(path: str, role: str) -> str:
    """``"csv"`` or ``"parquet"`` from the extension (or, for a local folder, its files)."""
    name = path.rstrip("/").lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    local = _local_path(path)
    if _is_local(path) and os.path.isdir(local):
        files = os.listdir(local)
        if any(f.endswith(".parquet") for f in files):
            return "parquet"
        if any(f.endswith(".csv") for f in files):
            return "csv"
    raise UsageError(
        f"cannot tell the format of {role} {path!r}: name it *.csv (CSV with a header line) "
        "or *.parquet (Parquet file or folder)"
    )


def _check_input(path: str) -> str:
    if _is_local(path) and not os.path.exists(_local_path(path)):
        raise CliError(f"input {path!r} does not exist")
    return _format_of(path, "input")


def _check_absent(path: str, overwrite: bool, what: str) -> None:
    if not overwrite and _is_local(path) and os.path.exists(_local_path(path)):
        raise CliError(f"{what} {path!r} already exists; add --overwrite to replace it")


def _read(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    if fmt == "csv":
        return spark.read.csv(path, header=True, inferSchema=True)
    return spark.read.parquet(path)


def _quote(col: str) -> str:
    return "`" + col.replace("`", "``") + "`"


def _write(df: DataFrame, path: str, overwrite: bool) -> str:
    """Write ``df`` as CSV (one file with a header, when local) or Parquet; describe it."""
    fmt = _format_of(path, "output")
    mode = "overwrite" if overwrite else "errorifexists"
    if fmt == "parquet":
        df.write.mode(mode).parquet(path)
        return "a Parquet folder"
    if not _is_local(path):
        df.coalesce(1).write.mode(mode).csv(path, header=True)
        return "a CSV folder with one part file"
    target = os.path.abspath(_local_path(path))
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(target)}.writing-{uuid.uuid4().hex[:12]}")
    try:
        df.coalesce(1).write.csv(tmp, header=True)
        parts = sorted(glob.glob(os.path.join(tmp, "part-*")))
        if parts:
            part = parts[0]
        else:  # no rows: Spark may write no part file at all
            part = os.path.join(tmp, "empty.csv")
            with open(part, "w", encoding="utf-8") as f:
                f.write(",".join(df.columns) + "\n")
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(part, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return "one CSV file with a header"


def _numeric_columns(df: DataFrame) -> list[str]:
    from pyspark.sql import types as T

    return [f.name for f in df.schema.fields if isinstance(f.dataType, T.NumericType)]


def _feature_columns(df: DataFrame, requested: list[str] | None, weight: str | None,
                     source: str) -> list[str]:
    numeric = _numeric_columns(df)
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


def _free_name(columns: Sequence[str], name: str) -> str:
    candidate, i = name, 0
    while candidate in columns:
        i += 1
        candidate = f"{name}_{i}"
    return candidate


def _fmt_vector(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):.10g}" for v in values) + "]"


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


class _Collect(logging.Handler):
    """Keeps the per-iteration records' ``max_move`` (to tell convergence from maxIter)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.moves: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "max_move"):
            self.moves.append(float(record.max_move))


def _cmd_fit(args: argparse.Namespace, spark: _Spark) -> int:
    from sparkml_lloyd import LloydKMeans
    from sparkml_lloyd._params import validate

    estimator = LloydKMeans(
        k=args.k, maxIter=args.max_iter, tol=args.tol, initMode=args.init,
        distanceMeasure=args.distance,
    )
    if args.seed is not None:
        estimator.setSeed(args.seed)
    if args.weight_col:
        estimator.setWeightCol(args.weight_col)
    try:
        validate(estimator)
    except ValueError as e:  # a wrong value: a usage error, found before Spark starts
        raise UsageError(str(e)) from None
    fmt = _check_input(args.input)
    _check_absent(args.model_out, args.overwrite, "--model-out")

    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler

    df = _read(spark.get(), args.input, fmt)
    features = _feature_columns(df, args.features, args.weight_col, f"input {args.input!r}")
    vector_col = _free_name(df.columns, "features")
    assembler = VectorAssembler(inputCols=features, outputCol=vector_col)
    estimator.setFeaturesCol(vector_col)
    print(f"fitting k={args.k} on {args.input} with features: {', '.join(features)}", flush=True)

    collect = _Collect()
    logger = logging.getLogger("sparkml_lloyd")
    logger.addHandler(collect)
    try:
        pipeline_model = Pipeline(stages=[assembler, estimator]).fit(df)
    finally:
        logger.removeHandler(collect)
    model = pipeline_model.stages[-1]
    summary = model.summary
    converged = bool(collect.moves) and collect.moves[-1] <= args.tol
    measure = "cosine distances" if args.distance == "cosine" else "squared distances"
    weighted = "weighted " if args.weight_col else ""
    print(f"iterations: {summary.numIter} "
          f"({'converged' if converged else 'stopped at --max-iter'})")
    print(f"training cost: {summary.trainingCost:.10g} ({weighted}sum of {measure} to the "
          "nearest center)")
    print(f"rows: {sum(summary.clusterSizes)}; cluster sizes: {summary.clusterSizes}")
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


def _cmd_predict(args: argparse.Namespace, spark: _Spark) -> int:
    fmt = _check_input(args.input)
    _format_of(args.out, "--out")
    _check_absent(args.out, args.overwrite, "--out")
    if _is_local(args.model) and not os.path.isdir(_local_path(args.model)):
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
    df = _read(session, args.input, fmt)
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
    what = _write(out, args.out, args.overwrite)
    written = _read(session, args.out, _format_of(args.out, "--out"))
    sizes = {int(r[0]): int(r[1]) for r in
             written.groupBy(PREDICTION_COL).count().collect() if r[0] is not None}
    print(f"wrote {sum(sizes.values())} rows with a {PREDICTION_COL!r} column to {args.out} "
          f"({what}); rows per cluster: {dict(sorted(sizes.items()))}")
    return 0


def _cmd_demo(args: argparse.Namespace, spark: _Spark) -> int:
    from sparkml_lloyd.demo import _import_plotting, run_demo

    _import_plotting()  # a missing extra is reported before Spark starts
    spark.get()
    run_demo(args.out, spark.master)
    return 0


def find_bench_runner() -> Path | None:
    """``benchmarks/run.py`` in the current directory, or next to the package's parent
    directory (a source checkout installed with ``pip install -e``)."""
    here = Path(__file__).resolve().parent.parent
    for root in (Path.cwd(), here):
        candidate = root / "benchmarks" / "run.py"
        if candidate.is_file():
            return candidate
    return None


def _load_bench_runner(path: Path) -> Any:
    name = "_sparkml_lloyd_bench_run"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot load {path}")
    # The checkout is importable (``import benchmarks.x``), here and in Python workers.
    root = str(path.parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    pythonpath = os.environ.get("PYTHONPATH", "")
    if root not in pythonpath.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, pythonpath) if p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(module)  # its functions can run on executors
    if not callable(getattr(module, "main", None)):
        raise CliError(f"{path} has no main(argv) function")
    return module


def _cmd_bench(args: argparse.Namespace, forwarded: list[str],
               parser: argparse.ArgumentParser) -> int:
    runner = find_bench_runner()
    if forwarded[:1] in (["-h"], ["--help"]):
        bench = parser._subparsers._group_actions[0].choices["bench"]  # type: ignore[union-attr]
        bench.print_help()
        if runner is None:
            print(f"\nbenchmarks/run.py was not found (looked in {Path.cwd()} and "
                  f"{Path(__file__).resolve().parent.parent}).")
            return 0
        print(f"\nOptions of {runner}:\n", flush=True)
        try:
            _load_bench_runner(runner).main(["--help"])
        except SystemExit:
            pass
        except Exception as e:
            print(f"(cannot load it: {describe_error(e)})")
        return 0
    if runner is None:
        raise CliError(
            "benchmarks/run.py was not found: run 'bench' from a source checkout of "
            f"sparkml-lloyd (looked in {Path.cwd() / 'benchmarks'} and "
            f"{Path(__file__).resolve().parent.parent / 'benchmarks'})"
        )
    passed = ["--master", args.master] if hasattr(args, "master") else []
    if forwarded[:1] == ["--"]:
        forwarded = forwarded[1:]
    result = _load_bench_runner(runner).main(passed + forwarded)
    return int(result or 0)


@contextlib.contextmanager
def _progress_to_stdout() -> Iterator[None]:
    """Per-iteration lines of the ``sparkml_lloyd`` logger as plain lines on stdout; the
    logger is restored afterwards (``main`` may be called from Python)."""
    logger = logging.getLogger("sparkml_lloyd")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sparkml-lloyd`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    head, forwarded = _split_bench(argv)
    args = parser.parse_args(head)  # exits 2 with one line on a usage error
    master = getattr(args, "master", DEFAULT_MASTER)
    verbose = getattr(args, "verbose", False)
    spark = _Spark(master, verbose)
    try:
        with warnings.catch_warnings():
            # pandas 3 works (the oracle tests check the Arrow paths); pyspark still warns.
            warnings.filterwarnings(
                "ignore", message="PySpark does not yet fully support pandas",
                category=FutureWarning,
            )
            if args.command == "bench":
                return _cmd_bench(args, forwarded or [], parser)
            if args.command == "demo":  # the demo prints its own lines
                return _cmd_demo(args, spark)
            command = _cmd_fit if args.command == "fit" else _cmd_predict
            with _progress_to_stdout():
                return command(args, spark)
    except UsageError as e:
        print(f"{PROG}: error: {args.command}: {e} (see '{PROG} {args.command} --help')",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: error: {describe_error(e)}", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        spark.stop()
