"""The Spark Connect cells of a benchmark run (``python -m benchmarks.run --backend connect``).

:func:`run` (in the runner's process) starts a Spark Connect server from the pip package
(``tests/connect_server.py``: ``--master`` of the run, its Spark conf, 127.0.0.1, stopped by
PID), and runs the measuring client in a process of its own (``python -m benchmarks.connect``:
a Connect session makes pyspark's ``is_remote()`` true for the whole process, as for a user's
client). The client measures each cell as the classic runner does, with the runner's own
functions (:func:`benchmarks.run._timed_rounds`, ``_default_fit_and_transform``) behind
Connect's :class:`benchmarks.run.Hooks`: ours and the ml built-ins on the same cached data of
the same server, per iteration, whole default fit and transform; what ours caches
(:class:`benchmarks.storage.ConnectProbe`); and what each step of our Connect fit costs
(:func:`cost_breakdown`). Its cells (``"backend": "connect"``) join the run's record.

Differences from the classic runner: no JVM garbage collection before a timed call (a client
cannot ask for one), and ours reports its iterations only after its fit (the fit runs on the
executors), so its iterations are not timed one by one.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import competitors as C
from benchmarks import grid as G
from benchmarks import record as R
from benchmarks import run as runner
from benchmarks.datagen import generate
from benchmarks.measure import MemorySampler, keep_connect_workers_warm, median
from benchmarks.storage import ConnectProbe

#: Timed calls of each step of :func:`cost_breakdown` per round of the run (at least 2).
COST_CALLS_PER_ROUND = 2
log = runner.log


# --------------------------------------------------------------------------------------
# The runner's side: the server and the client process
# --------------------------------------------------------------------------------------


def run(settings: G.Settings, record: dict[str, Any], out_path: Path, t0: float) -> None:
    """Measure ``settings.connect_cells`` on a Connect server started for them, in a client
    process; add the cells (and, for a Connect-only run, the environment) to ``record`` and
    write it. A client that fails leaves its unmeasured cells as errors."""
    from tests.connect_server import ConnectServer

    env = {k: v for k, v in os.environ.items()
           if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    with tempfile.TemporaryDirectory(prefix="sparkml_lloyd-bench-connect-") as tmp:
        settings_file, part = Path(tmp) / "settings.json", Path(tmp) / "cells.json"
        settings_file.write_text(json.dumps(settings.to_json()))
        t_server = time.perf_counter()
        with ConnectServer(settings.master, settings.spark_conf) as server:
            log(f"Connect server {server.url} (pid {server.pid}, master {settings.master}) "
                f"up in {time.perf_counter() - t_server:.1f}s")
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.connect", server.url, str(server.pid),
                 str(server.ui_port), str(settings_file), str(part)],
                cwd=R.REPO_ROOT, env=env, check=False)
        out = json.loads(part.read_text()) if part.exists() else {}
    cells = out.get("cells", [])
    done = {c["cell"] for c in cells}
    for cell in settings.connect_cells:
        if cell.key not in done:
            cells.append({"cell": cell.key, "backend": "connect", "n": cell.n, "d": cell.d,
                          "k": cell.k, "raw_bytes": cell.raw_bytes, "status": "error",
                          "error": f"the Connect client exited with {proc.returncode} "
                                   "before measuring this cell"})
    record["cells"] += cells
    if out.get("environment"):
        record.setdefault("environment", out["environment"])
        record["connect_environment"] = out["environment"]
    record["connect_memory_overall"] = out.get("memory_overall")
    record["total_seconds"] = time.perf_counter() - t0
    R.write_json(record, out_path)


# --------------------------------------------------------------------------------------
# The client's side
# --------------------------------------------------------------------------------------


def _environment(spark: Any, ui_port: int) -> dict[str, Any]:
    """The run's environment, the server's Spark facts read from its REST API."""
    from tests.connect_server import rest

    app = rest(ui_port, "applications")[0]["id"]
    facts = rest(ui_port, f"applications/{app}/environment")
    java = facts.get("runtime", {}).get("javaVersion", "").split(" ")[0] or None
    return R.environment_of(spark.version, java, dict(facts.get("sparkProperties", [])), None)


def _storage(ui_port: int) -> dict[int, int]:
    """RDD id -> cached bytes (memory + disk) on the server, from its REST API."""
    from tests.connect_server import rest

    app = rest(ui_port, "applications")[0]["id"]
    return {int(r["id"]): int(r.get("memoryUsed", 0)) + int(r.get("diskUsed", 0))
            for r in rest(ui_port, f"applications/{app}/storage/rdd")}


class ArrowFloor:
    """A "model" whose ``transform`` ships the rows through our Connect transform's route and
    computes nothing: the same input columns
    (:func:`sparkml_lloyd._schema.feature_columns`), the same UDF kind
    (:func:`sparkml_lloyd._compat.arrow_udf`), 0 for every row. What it takes is the floor of
    any transform through a Python UDF on the server, whatever the UDF computes."""

    def transform(self, df: Any) -> Any:
        import pyarrow as pa
        from pyspark.sql import types as T

        from sparkml_lloyd import _compat, _schema

        def zeros(*columns):  # type: ignore[no-untyped-def]  # hints would pick the UDF kind
            return pa.array(np.zeros(len(columns[0]), dtype=np.int32))

        features = _schema.feature_columns(df, "features")
        udf = _compat.arrow_udf(zeros, T.IntegerType())
        return df.withColumn("prediction", udf(*features.values()))


def _hooks(spark: Any, settings: G.Settings, server_pid: int, ui_port: int) -> runner.Hooks:
    def quiesce() -> None:
        keep_connect_workers_warm(spark, settings.partitions)
        gc.collect()

    def probed_fit(comp: C.Competitor, m: int) -> tuple[C.FitOutcome, dict[str, Any]]:
        probe = ConnectProbe(server_pid, partial(_storage, ui_port))
        out = probe.run(lambda: comp.fit(m))
        return out, probe.to_json()

    return runner.Hooks(quiesce, probed_fit, ArrowFloor)


def _pass_through(batches: Any) -> Any:
    yield from batches


#: ``allGather`` calls of our fit's barrier tasks (:func:`sparkml_lloyd._barrier.fit_task`;
#: two before 30 Nov 2026, as older records say).
FIT_GATHERS = 1


def _barrier_task(batches: Any, gathers: int, blob_bytes: int) -> Any:
    """A barrier task shaped like our fit's (:func:`sparkml_lloyd._barrier.fit_task`) without
    the fit: read the partition, meet the other tasks ``gathers`` times, and (task 0) return
    ``blob_bytes`` as the fit returns its result."""
    from pyspark import BarrierTaskContext

    from sparkml_lloyd._barrier import _rows

    ctx = BarrierTaskContext.get()
    for _ in batches:
        pass
    for _ in range(gathers):
        ctx.allGather(str(ctx.partitionId()))
    if ctx.partitionId() == 0:
        yield from _rows("result", b"\0" * blob_bytes)


def result_bytes(k: int, d: int, iterations: int) -> int:
    """Bytes of the pickled result a fit of ``iterations`` iterations returns to the client
    (:func:`sparkml_lloyd._barrier.decode` reads it): ``k x d`` centers, the cost history,
    cluster sizes and one record per iteration."""
    from sparkml_lloyd import IterationRecord
    from sparkml_lloyd._fit import FitResult

    records = [IterationRecord(i + 1, 1e6, 1.0, [10**5] * k, 0.1) for i in range(iterations)]
    result = FitResult(np.ones((k, d)), [1e6] * (iterations + 1), [10**5] * k, records, False)
    return len(pickle.dumps((result, None), protocol=pickle.HIGHEST_PROTOCOL))


def cost_breakdown(spark: Any, calls: int, blob_bytes: int) -> dict[str, Any]:
    """Median seconds of what our Connect fit pays besides its passes, each step alone, on
    ``task_slots`` partitions of ``spark.range`` (``calls`` interleaved calls of each):

    * ``slots``: the task-slots query (:func:`sparkml_lloyd._connect.task_slots`);
    * ``barrier_job``: a barrier ``mapInArrow`` job shaped like the fit's (one row back from
      task 0 through a one-partition shuffle, collected): the fit's one query;
    * ``rendezvous``: the same job with the fit's ``gathers`` ``allGather`` calls (one),
      minus ``barrier_job``;
    * ``result``: the same job returning ``blob_bytes`` (a fit's result), minus
      ``barrier_job``;
    * ``query``: a trivial non-barrier ``mapInArrow`` + ``collect``: what one query per pass
      would add to every iteration.
    """
    from sparkml_lloyd._barrier import RESULT_SCHEMA
    from sparkml_lloyd._connect import task_slots

    slots = task_slots(spark)
    rows = spark.range(0, slots, 1, numPartitions=slots)

    def barrier(gathers: int, size: int) -> None:
        task = partial(_barrier_task, gathers=gathers, blob_bytes=size)
        rows.mapInArrow(task, RESULT_SCHEMA, barrier=True).repartition(1).collect()

    steps = {
        "slots": lambda: task_slots(spark),
        "query": lambda: rows.mapInArrow(_pass_through, "id long").collect(),
        "barrier_job": lambda: barrier(0, 0),
        "rendezvous_job": lambda: barrier(FIT_GATHERS, 0),
        "result_job": lambda: barrier(0, blob_bytes),
    }
    raw: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(calls):
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            raw[name].append(time.perf_counter() - t)
    med = {name: median(ts) for name, ts in raw.items()}
    return {"task_slots": slots, "calls": calls, "result_bytes": blob_bytes, "raw": raw,
            "slots": med["slots"], "query": med["query"], "barrier_job": med["barrier_job"],
            "rendezvous": med["rendezvous_job"] - med["barrier_job"], "gathers": FIT_GATHERS,
            "result": med["result_job"] - med["barrier_job"]}


def _memory(results: dict[str, dict[str, Any]], cell: G.Cell) -> dict[str, Any]:
    caches = {name: res.get("fit_cache", {}) for name, res in results.items()}
    growth = caches.get("ours", {}).get("peak_workers_growth_bytes")
    return {"raw_bytes": cell.raw_bytes, "ours_workers_growth_bytes": growth,
            "ours_cache_ratio": growth / cell.raw_bytes if growth else None,
            "cache_by_competitor": caches}


def measure_cell(spark: Any, settings: G.Settings, cell: G.Cell, sampler: MemorySampler,
                 hooks: runner.Hooks) -> dict[str, Any]:
    """One Connect cell; every failure is recorded in the result, not raised."""
    out: dict[str, Any] = {"cell": cell.key, "backend": "connect", "n": cell.n, "d": cell.d,
                           "k": cell.k, "raw_bytes": cell.raw_bytes, "status": "ok"}
    reason = G.skip_reason(cell, settings.max_nd)
    if reason:
        out.update(status="skipped", reason=reason)
        return out
    t_cell = time.perf_counter()
    comps: list[C.Competitor] = []
    data = None
    try:
        sampler.set_phase(f"connect {cell.key}:data")
        log(f"connect {cell.key}: generating {cell.n} x {cell.d} on the server's executors")
        data = generate(spark, cell, settings.seed, settings.partitions)
        out["data"] = {"seconds": data.seconds, "partitions": settings.partitions}
        prepared = {}
        for name in settings.connect_competitors:
            comp = C.COMPETITOR_CLASSES[name](data, settings.seed)
            t0 = time.perf_counter()
            comp.prepare()
            comps.append(comp)
            prepared[name] = {"seconds": time.perf_counter() - t0}
        results, centers = runner._timed_rounds(hooks, settings, cell, comps, sampler)
        for name, res in results.items():
            res["prepare"] = prepared[name]
            for key in ("trace_m1", "trace_m2", "time_split"):  # reported after the fit
                res.pop(key, None)
        out["competitors"] = results
        out["centers_check"] = runner._check_centers(results, centers)
        out.update(runner._ratios(results))
        if "ours" in results:
            out.update(runner._default_fit_and_transform(hooks, settings, data, sampler))
            log(f"connect {cell.key}: cost breakdown")
            sampler.set_phase(f"connect {cell.key}:costs")
            out["costs"] = cost_breakdown(
                spark, max(2, COST_CALLS_PER_ROUND * settings.repeats),
                result_bytes(cell.k, cell.d, results["ours"]["m2"]))
        out["memory"] = _memory(results, cell)
    except Exception as e:
        runner.record_failure(out, e, f"connect {cell.key}")
    finally:
        sampler.set_phase("idle")
        for comp in comps:
            comp.release()
        if data is not None:
            data.unpersist()
    out["seconds"] = time.perf_counter() - t_cell
    return out


def main(argv: list[str]) -> int:
    """``python -m benchmarks.connect URL SERVER_PID UI_PORT SETTINGS.json OUT.json``: measure
    the settings' Connect cells on the server at URL; write the cells (after each one) and the
    environment to OUT.json."""
    import warnings

    from pyspark.sql import SparkSession

    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    url, server_pid, ui_port, settings_file, out_file = argv
    settings = G.Settings.from_json(json.loads(Path(settings_file).read_text()))
    runner._register_by_value()
    spark = SparkSession.builder.remote(url).getOrCreate()
    try:
        out: dict[str, Any] = {"environment": _environment(spark, int(ui_port)), "cells": []}
        hooks = _hooks(spark, settings, int(server_pid), int(ui_port))
        with MemorySampler(int(server_pid)) as sampler:
            for cell in settings.connect_cells:
                out["cells"].append(measure_cell(spark, settings, cell, sampler, hooks))
                R.write_json(out, Path(out_file))
            out["memory_overall"] = sampler.summary()["overall"]
        R.write_json(out, Path(out_file))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
