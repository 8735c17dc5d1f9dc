"""The ``sparkml-lloyd`` command line (also ``python -m sparkml_lloyd``).

Subcommands: ``fit`` (CSV/Parquet -> saved PipelineModel), ``predict`` (saved model + input ->
output with a ``prediction`` column), ``demo`` (the walkthrough, see :mod:`sparkml_lloyd.demo`),
``bench`` (runs ``benchmarks/run.py`` of a source checkout) and ``clean`` (block files left on
this host). Every command accepts
``--master URL`` (or ``--remote sc://...``, a Spark Connect server) and ``--verbose``;
``sparkml-lloyd COMMAND --help`` describes each.

Errors end the command with one line on stderr, ``sparkml-lloyd: error: ...``, and exit
status 2 for a usage error, 1 for any other failure. Nothing starts Spark before the
arguments have been checked.

Modules, one per job: :mod:`~sparkml_lloyd.cli.arguments` (the parser),
:mod:`~sparkml_lloyd.cli.spark_session` (the session of a command),
:mod:`~sparkml_lloyd.cli.errors` (failures as one line), :mod:`~sparkml_lloyd.cli.files`
(CSV and Parquet in and out), :mod:`~sparkml_lloyd.cli.commands` (``fit``, ``predict``,
``demo``) and :mod:`~sparkml_lloyd.cli.bench` (``bench``); :func:`main` runs one command.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from sparkml_lloyd.cli import commands, files, sweep
from sparkml_lloyd.cli.arguments import DEFAULT_MASTER, PROG, build_parser, split_bench
from sparkml_lloyd.cli.bench import find_bench_runner, run_bench
from sparkml_lloyd.cli.errors import CliError, UsageError, describe_error
from sparkml_lloyd.cli.spark_session import CommandSession

__all__ = ["CliError", "UsageError", "build_parser", "describe_error", "find_bench_runner",
           "main", "split_bench"]

_COMMANDS = {"fit": commands.fit, "predict": commands.predict, "demo": commands.demo,
             "clean": commands.clean, "sweep": sweep.sweep}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sparkml-lloyd`` with ``argv`` (default ``sys.argv[1:]``); the exit status.

    A SparkSession that is already active (``main`` called from Python) is used as it is and
    left running; otherwise the command starts its own on first use and stops it at the end.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    head, forwarded = split_bench(argv)
    args = build_parser().parse_args(head)  # exits 2 with one line on a usage error
    verbose = getattr(args, "verbose", False)
    spark = CommandSession(getattr(args, "master", DEFAULT_MASTER), verbose,
                           getattr(args, "remote", None))
    try:
        with warnings.catch_warnings():
            # pandas 3 works (the oracle tests check the Arrow paths); pyspark still warns.
            warnings.filterwarnings(
                "ignore", message="PySpark does not yet fully support pandas",
                category=FutureWarning,
            )
            if args.command == "bench":
                if spark.remote is not None:
                    raise UsageError("bench starts Spark itself; give --master, not --remote")
                return run_bench(forwarded or [], getattr(args, "master", None))
            with files.server_paths(spark.remote is not None):
                return _COMMANDS[args.command](args, spark)
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
