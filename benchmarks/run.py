"""Benchmark runner: ``python -m benchmarks.run [--grid smoke|default|full] [--repeats N] ...``,
from the root of a source checkout (``sparkml-lloyd bench`` runs the same command there).

For every cell of the grid (dense Gaussian blobs, then sparse text-like cells; ``--features``
picks): generate the data on the executors, cache and count it; prepare
every competitor (all untimed); one untimed warm-up fit per competitor, during which Spark's
storage info is polled to measure what the competitor caches; then ``repeats`` rounds in which
every competitor (in a rotating order) fits with ``maxIter = m1`` and ``maxIter = m2``. The
per-iteration time is ``(T(m2) - T(m1)) / (m2 - m1)`` per round, and its median over rounds
is reported, so start-up and initialisation cancel. Then the whole default ``fit`` of ours vs
the built-in, and ``transform`` of both with the same centers, again interleaved, with a
second copy of the built-in's model as an A/A control. Centers of
ours, MLlib, scikit-learn and the per-row walkthrough (all from the same ``C0``) are compared
at every common iteration count. Everything the cell cached is unpersisted before the next.

Each run writes ``benchmarks/results/<timestamp>.json`` (rewritten after every cell, so an
interrupted run keeps what it measured) and regenerates ``docs/benchmarks.md`` and
``docs/images/benchmarks.png``; ``--report-only RESULT.json`` only regenerates the page
(several results make one page: the full grid run in pieces, or cells measured again, each
cell from the newest run that has it).

``--backend connect`` measures the grid's Connect cells on a Spark Connect server instead
(ours and the ml built-ins, the client in its own process: :mod:`benchmarks.connect`);
``--backend both`` runs the classic cells, then the Connect cells, into one record.

Exit status: 0 when every cell ran and every center comparison agreed; 1 when a cell failed
or centers disagreed; 2 for bad arguments. Performance targets are reported, not enforced.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # ``python benchmarks/run.py``
    print("benchmarks/run.py is a module of the benchmarks package: run it from the "
          "checkout root as 'python -m benchmarks.run ...'", file=sys.stderr)
    sys.exit(2)

import numpy as np
from pyspark import SparkContext
from pyspark.sql import SparkSession

import benchmarks
from benchmarks import competitors as C
from benchmarks import grid as G
from benchmarks import record as R
from benchmarks import report, textgen
from benchmarks.datagen import generate
from benchmarks.measure import (
    MemorySampler,
    driver_jvm_pid,
    keep_python_workers_warm,
    median,
    relative_difference,
)
from benchmarks.storage import CacheProbe, cached_rdds, new_cache_bytes

#: Centers of ours and of a competitor started from the same C0 must agree to this
#: (max |a - b| / max |b| over the k x d centers).
CENTERS_RTOL = 1e-9
DEFAULT_SEED = 42
#: How the runner is invoked (from the checkout root): argparse's program name.
PROG = "python -m benchmarks.run"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Arguments and settings
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark LloydKMeans against Spark's KMeans (mllib, ml row, ml block), "
        "scikit-learn and the walkthrough's per-row code.",
    )
    p.add_argument("--grid", choices=sorted(G.GRIDS), default="default",
                   help="smoke: CI-sized (~1-2 min); default: the target cells; full: "
                   "n x d x k where feasible (hours)")
    p.add_argument("--cells", help="override the grid's cells: 'n,d,k;n,d,k' (e.g. '2e5,20,20'); "
                   "a sparse cell is 'n,d,k,nnz' (e.g. '1e5,2^18,20,30')")
    p.add_argument("--features", choices=G.FEATURES,
                   help="the grid's dense cells (Gaussian blobs), its sparse cells (text-like "
                   "documents) or both (default: both)")
    p.add_argument("--repeats", type=int, help="rounds per measurement (grid default: 3; "
                   "smoke 1); medians are reported")
    p.add_argument("--backend", choices=G.BACKENDS, default="classic",
                   help="classic: a local session (default); connect: the grid's Connect cells "
                   "on a Spark Connect server started for the run, ours vs the ml built-ins, "
                   "the client in its own process; both: classic, then connect, one record")
    p.add_argument("--master", default="local[2]", help="Spark master (default local[2]; "
                   "with --backend connect, the server's)")
    p.add_argument("--partitions", type=int,
                   help="input partitions for every competitor (default: cores of --master)")
    p.add_argument("--m1", type=int, help="smaller maxIter of the per-iteration difference")
    p.add_argument("--m2", type=int, help="larger maxIter of the per-iteration difference")
    p.add_argument("--per-row-iters", metavar="M1,M2",
                   help="iteration counts of the slow per-row walkthrough (grid default: 1,2; "
                   "smoke 0,1)")
    p.add_argument("--driver-memory", help="spark.driver.memory (grid default: 12g; smoke 2g)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data and init seed")
    p.add_argument("--competitors", default=",".join(G.COMPETITORS),
                   help=f"comma-separated subset of {','.join(G.COMPETITORS)}")
    p.add_argument("--warmup", choices=("on", "off"),
                   help="one untimed fit per competitor before the timed rounds, which also "
                   "probes cache sizes (grid default: on; smoke off; off: the first timed "
                   "maxIter=m1 fit is probed instead)")
    p.add_argument("--max-nd", type=float, default=G.MAX_ND,
                   help="skip cells with n*d above this (default 1e8)")
    p.add_argument("--out-dir", type=Path, default=R.REPO_ROOT / "benchmarks" / "results",
                   help="where the result JSON goes (default benchmarks/results)")
    p.add_argument("--docs-dir", type=Path, default=R.REPO_ROOT / "docs",
                   help="where benchmarks.md and images/benchmarks.png go (default docs)")
    p.add_argument("--report-only", type=Path, nargs="+", metavar="RESULT.json",
                   help="regenerate the page and plot from an existing result, or from several "
                   "results on one machine (merged; each cell from the newest run that has "
                   "it); run nothing")
    return p.parse_args(argv)


def build_settings(args: argparse.Namespace) -> G.Settings:
    spec = G.GRIDS[args.grid]
    features = args.features or "both"
    if args.cells and args.features:
        raise ValueError("--cells and --features exclude each other: a cell 'n,d,k,nnz' is "
                         "sparse, 'n,d,k' dense")
    cells = G.parse_cells(args.cells) if args.cells else G.grid_cells(spec, features)
    connect_cells: list[G.Cell] = []
    if args.backend != "classic":
        connect_cells = G.parse_cells(args.cells) if args.cells else [*spec.connect_cells]
        if any(c.sparse for c in connect_cells):
            raise ValueError("--backend connect measures dense cells only")
    if args.backend == "connect":
        cells = []
    m1 = spec.m1 if args.m1 is None else args.m1
    m2 = spec.m2 if args.m2 is None else args.m2
    if not 0 <= m1 < m2:
        raise ValueError(f"need 0 <= m1 < m2, got m1={m1}, m2={m2}")
    pm1, pm2 = spec.per_row_iters
    if args.per_row_iters:
        try:
            pm1, pm2 = (int(x) for x in args.per_row_iters.split(","))
        except ValueError:
            raise ValueError("--per-row-iters must be 'M1,M2'") from None
    if not 0 <= pm1 < pm2:
        raise ValueError(f"--per-row-iters: need 0 <= M1 < M2, got {pm1},{pm2}")
    names = [c.strip() for c in args.competitors.split(",") if c.strip()]
    unknown = sorted(set(names) - set(G.COMPETITORS))
    if unknown or not names:
        raise ValueError(f"unknown competitors {unknown}; choose from {G.COMPETITORS}")
    connect_names = [c for c in spec.connect_competitors if c in names] if connect_cells else []
    if connect_cells and not connect_names:
        raise ValueError(f"--backend {args.backend}: none of {spec.connect_competitors} chosen")
    repeats = spec.repeats if args.repeats is None else args.repeats
    if repeats < 1:
        raise ValueError("--repeats must be >= 1")
    partitions = args.partitions or G.cores_of(args.master)
    driver_memory = args.driver_memory or spec.driver_memory
    settings = G.Settings(
        grid=args.grid, cells=cells, repeats=repeats, m1=m1, m2=m2, per_row_m1=pm1,
        per_row_m2=pm2,
        warmup=spec.warmup if args.warmup is None else args.warmup == "on",
        master=args.master, partitions=partitions,
        driver_memory=driver_memory, seed=args.seed,
        competitors=[c for c in G.COMPETITORS if c in names], smoke=spec.smoke,
        max_nd=int(args.max_nd),
        longer_runs=not spec.smoke and args.m2 is None, transform_calls=spec.transform_calls,
        features=features, backend=args.backend, connect_cells=connect_cells,
        connect_competitors=connect_names,
    )
    settings.spark_conf = {
        "spark.driver.memory": driver_memory,
        "spark.driver.maxResultSize": "4g",
        "spark.sql.shuffle.partitions": str(partitions),
        "spark.default.parallelism": str(partitions),
    }
    return settings


# --------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hooks:
    """What the measuring of a cell asks of its backend (classic here, Connect in
    :mod:`benchmarks.connect`): make the next timed call start clean; run one fit under a
    probe of what it caches (the outcome and the probe's figures); optionally, a transform of
    nothing (``transform_floor()``: a model whose ``transform`` only ships the rows through
    the Arrow UDF route), timed beside the others."""

    quiesce: Callable[[], None]
    probed_fit: Callable[[C.Competitor, int], tuple[C.FitOutcome, dict[str, Any]]]
    transform_floor: Callable[[], Any] | None = None


def _classic_hooks(spark: SparkSession, sampler: MemorySampler) -> Hooks:
    sc = spark.sparkContext
    return Hooks(lambda: _quiesce(spark),
                 lambda comp, m: _probed_fit(sc, sampler.jvm_pid, comp, m))


def _quiesce(spark: SparkSession) -> None:
    """Before every timed call: make sure the Python workers are alive and warm (see
    :func:`keep_python_workers_warm`), then collect garbage in the Python driver and the JVM,
    so no run pays for the previous one's garbage or for re-forking idle-killed workers."""
    keep_python_workers_warm(spark, spark.sparkContext.defaultParallelism)
    gc.collect()
    spark.sparkContext._jvm.java.lang.System.gc()  # type: ignore[union-attr]


def _iterations(settings: G.Settings, name: str, cell: G.Cell) -> tuple[int, int]:
    if name == "per_row":
        return settings.per_row_m1, settings.per_row_m2
    return G.iterations_for(cell, settings.m1, settings.m2, settings.longer_runs)


def _per_iteration(res: dict[str, Any]) -> None:
    m1, m2 = res["m1"], res["m2"]
    res["per_iter_raw"] = [(b - a) / (m2 - m1) for a, b in zip(res["t_m1"], res["t_m2"],
                                                              strict=True)]
    res["per_iter"] = median(res["per_iter_raw"])
    res["per_iter_cpu_raw"] = [(b - a) / (m2 - m1) for a, b in zip(res["cpu_m1"],
                                                                  res["cpu_m2"], strict=True)]
    res["per_iter_cpu"] = median(res["per_iter_cpu_raw"])
    res["median_t_m1"] = median(res["t_m1"])
    res["median_t_m2"] = median(res["t_m2"])
    if res.get("trace_m2"):
        res["time_split"] = _time_split(res["trace_m2"])


def _time_split(traces: list[list[tuple[float, str]]]) -> dict[str, float | None]:
    """Where ours spends a fit (medians over rounds), from the times its iterations were
    reported (the iteration callback): *setup* until the first iteration (preparation pass,
    init, first assignment pass), *iteration* between consecutive iterations,
    *after_last_iteration* from the last one until ``fit`` returned (the pass that measures
    the final centers, releasing the blocks, building the model and summary).

    Records of runs before the callback existed have *tail* instead, timed from the engine's
    last log record ("finished ...", after that pass)."""
    setup, per_iter, after = [], [], []
    for trace in traces:
        its = [t for t, msg in trace if msg.startswith("iteration")]
        if its:
            setup.append(its[0])
            after.append(trace[-1][0] - its[-1])
            if len(its) > 1:
                per_iter.append((its[-1] - its[0]) / (len(its) - 1))
    return {"setup": median(setup), "iteration": median(per_iter),
            "after_last_iteration": median(after)}


def _probed_fit(sc: SparkContext, jvm_pid: int, comp: C.Competitor,
                m: int) -> tuple[C.FitOutcome, dict[str, Any]]:
    """``comp.fit(m)`` under a :class:`CacheProbe`: the fit's outcome and what the competitor
    cached meanwhile. Ours reports its first iteration to the probe (its iteration
    callback), so even a fit shorter than one poll is seen with its blocks."""
    probe = CacheProbe(sc, jvm_pid)
    out = probe.run(lambda: comp.fit(m, on_iteration=probe.on_iteration))
    return out, probe.to_json()


def _timed_rounds(hooks: Hooks, settings: G.Settings, cell: G.Cell,
                  comps: list[C.Competitor], sampler: MemorySampler
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[int, np.ndarray]]]:
    results: dict[str, dict[str, Any]] = {}
    centers: dict[str, dict[int, np.ndarray]] = {}
    for comp in comps:
        m1, m2 = _iterations(settings, comp.name, cell)
        results[comp.name] = {"m1": m1, "m2": m2, "t_m1": [], "t_m2": [], "cpu_m1": [],
                              "cpu_m2": [], "num_iter": {}, "from_c0": comp.from_c0}
        centers[comp.name] = {}
    if settings.warmup:
        for comp in comps:
            sampler.set_phase(f"{cell.key}:{comp.name}")
            res = results[comp.name]
            log(f"{cell.key}: warm-up {comp.name} (maxIter={res['m1']})")
            hooks.quiesce()
            out, res["fit_cache"] = hooks.probed_fit(comp, res["m1"])
            res["warmup_seconds"] = out.seconds
    for r in range(settings.repeats):
        shift = r % len(comps)
        for comp in comps[shift:] + comps[:shift]:
            sampler.set_phase(f"{cell.key}:{comp.name}")
            res = results[comp.name]
            # odd rounds time m2 first: an order effect (warm caches after the first of the
            # pair) then cancels in the median instead of biasing every difference one way
            for label in ("m1", "m2") if r % 2 == 0 else ("m2", "m1"):
                m = res[label]
                hooks.quiesce()
                if not settings.warmup and r == 0 and label == "m1":
                    # No warm-up: probe this (timed) fit; the polling costs a little time.
                    out, res["fit_cache"] = hooks.probed_fit(comp, m)
                else:
                    out = comp.fit(m)
                res[f"t_{label}"].append(out.seconds)
                res[f"cpu_{label}"].append(out.cpu_seconds)
                res["num_iter"][str(m)] = out.num_iter
                centers[comp.name][m] = out.centers
                if out.trace is not None:
                    res.setdefault(f"trace_{label}", []).append(out.trace)
            log(f"{cell.key}: round {r + 1}/{settings.repeats} {comp.name}: "
                f"T({res['m1']})={res['t_m1'][-1]:.3f}s T({res['m2']})={res['t_m2'][-1]:.3f}s")
    for res in results.values():
        _per_iteration(res)
    return results, centers


def _check_centers(results: dict[str, dict[str, Any]],
                   centers: dict[str, dict[int, np.ndarray]]) -> dict[str, Any]:
    """Compare every C0-started competitor with ours at each common iteration count, and
    record how many iterations each one ran (MLlib's is inferred from agreement)."""
    pairs: dict[str, dict[str, float]] = {}
    if "ours" in centers:
        for name, by_m in centers.items():
            if name == "ours" or not results[name]["from_c0"]:
                continue
            common = sorted(set(by_m) & set(centers["ours"]))
            pairs[name] = {str(m): relative_difference(by_m[m], centers["ours"][m])
                           for m in common}
    diffs = [v for p in pairs.values() for v in p.values()]
    info = {}
    if "ml_row" in centers and "ml_block" in centers:
        common = sorted(set(centers["ml_row"]) & set(centers["ml_block"]))
        info["ml_row_vs_ml_block"] = {
            str(m): relative_difference(centers["ml_block"][m], centers["ml_row"][m])
            for m in common
        }
    # Iterations actually run at m2; did anyone stop early (converge) before m2?
    iterations: dict[str, dict[str, Any]] = {}
    ours_full = ("ours" in results
                 and results["ours"]["num_iter"].get(str(results["ours"]["m2"]))
                 == results["ours"]["m2"])
    for name, res in results.items():
        m2 = res["m2"]
        n_iter = res["num_iter"].get(str(m2))
        source = "api"
        if name == "per_row":
            source = "fixed (no convergence test)"
        if n_iter is None and name == "mllib":
            agree = pairs.get("mllib", {}).get(str(m2))
            if ours_full and agree is not None and agree <= CENTERS_RTOL:
                n_iter, source = m2, "inferred: centers equal ours, which ran all iterations"
            else:
                source = "unknown (the Python API does not report it)"
        iterations[name] = {"m2": m2, "num_iter": n_iter, "source": source,
                            "converged_before_m2": None if n_iter is None else n_iter < m2}
    return {
        "rtol": CENTERS_RTOL,
        "ours_vs": pairs,
        "max_rel_diff": max(diffs) if diffs else None,
        "passed": (max(diffs) <= CENTERS_RTOL) if diffs else None,
        "info": info,
        "iterations": iterations,
    }


def _default_fit_and_transform(hooks: Hooks, settings: G.Settings,
                               data: Any, sampler: MemorySampler) -> dict[str, Any]:
    cell, df = data.cell, data.df
    runs: dict[str, list[C.DefaultFit]] = {"ours": [], "builtin": []}
    fitters = {"ours": C.default_fit_ours, "builtin": C.default_fit_builtin}
    sampler.set_phase(f"{cell.key}:default_fit")
    for r in range(settings.repeats):
        for who in (("ours", "builtin") if r % 2 == 0 else ("builtin", "ours")):
            hooks.quiesce()
            runs[who].append(fitters[who](df, cell.k, settings.seed))
            log(f"{cell.key}: default fit {who}: {runs[who][-1].seconds:.3f}s "
                f"({runs[who][-1].num_iter} iterations)")
    fit_out: dict[str, Any] = {}
    for who, rs in runs.items():
        fit_out[who] = {
            "seconds": median([x.seconds for x in rs]),
            "raw": [x.seconds for x in rs],
            "cpu_seconds": median([x.cpu_seconds for x in rs]),
            "cpu_raw": [x.cpu_seconds for x in rs],
            "num_iter": [x.num_iter for x in rs],
            "training_cost": rs[-1].training_cost,
        }
    fit_out["ratio"] = fit_out["ours"]["seconds"] / fit_out["builtin"]["seconds"]
    fit_out["cpu_ratio"] = _safe_ratio(fit_out["ours"]["cpu_seconds"],
                                       fit_out["builtin"]["cpu_seconds"])
    fit_out["cost_ratio"] = (fit_out["ours"]["training_cost"]
                             / fit_out["builtin"]["training_cost"])

    builtin_model = runs["builtin"][-1].model
    ours = C.same_centers_model(builtin_model)
    # A/A: a second Spark model with the same centers, timed in the same interleaving: how
    # far two identical transforms land apart in this run.
    models = {"ours": ours, "builtin": builtin_model, "builtin_again": ours.toSparkModel()}
    if hooks.transform_floor is not None:
        models["floor"] = hooks.transform_floor()
    times: dict[str, list[float]] = {who: [] for who in models}
    cpus: dict[str, list[float]] = {who: [] for who in models}
    sums: dict[str, int] = {}
    sampler.set_phase(f"{cell.key}:transform")
    # The first call of each model builds its JVM-side objects (ours: Spark's model holding
    # our centers; the built-in's exists since its fit); it is recorded, not in the median.
    first = {who: C.time_transform(models[who], df)[0]
             for who in sorted(models, key=lambda who: who != "builtin")}
    log(f"{cell.key}: first transform ours {first['ours']:.3f}s, "
        f"built-in {first['builtin']:.3f}s (not in the median)")
    for r in range(settings.repeats * settings.transform_calls):
        for who in (list(models) if r % 2 == 0 else list(models)[::-1]):
            hooks.quiesce()
            seconds, cpu, total = C.time_transform(models[who], df)
            times[who].append(seconds)
            cpus[who].append(cpu)
            sums[who] = total
        log(f"{cell.key}: transform ours {times['ours'][-1]:.3f}s, "
            f"built-in {times['builtin'][-1]:.3f}s")
    tr: dict[str, Any] = {
        who: {"seconds": median(ts), "raw": ts, "cpu_seconds": median(cpus[who]),
              "cpu_raw": cpus[who], "prediction_sum": sums[who],
              "first_call_seconds": first[who]}
        for who, ts in times.items()
    }
    tr["ratio"] = tr["ours"]["seconds"] / tr["builtin"]["seconds"]
    tr["aa_ratio"] = tr["builtin_again"]["seconds"] / tr["builtin"]["seconds"]
    if "floor" in tr:
        tr["floor_ratio"] = tr["floor"]["seconds"] / tr["builtin"]["seconds"]
    tr["cpu_ratio"] = _safe_ratio(tr["ours"]["cpu_seconds"], tr["builtin"]["cpu_seconds"])
    tr["rows_per_second_ours"] = cell.n / tr["ours"]["seconds"]
    tr["rows_per_second_builtin"] = cell.n / tr["builtin"]["seconds"]
    tr["predictions_agree"] = sums["ours"] == sums["builtin"] == sums["builtin_again"]
    tr["ours_path"] = C.transform_path(models["ours"], df)
    tr["ours_handle_invalid"] = models["ours"].getHandleInvalid()
    tr["method"] = ("model.transform(df).agg(F.sum('prediction')).collect(); same centers; "
                    f"one untimed first call each, then {settings.repeats} x "
                    f"{settings.transform_calls} interleaved calls")
    return {"default_fit": fit_out, "transform": tr}


def _safe_ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b and b > 0 and a > 0 else None


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ours vs the best built-in, scikit-learn and the per-row floor, per iteration. A
    non-positive per-iteration time (T(m2) <= T(m1): noise swamped the iterations) gives no
    ratio and is listed under ``noisy``."""
    per = {n: r["per_iter"] for n, r in results.items()}
    noisy = sorted(n for n, v in per.items() if v is None or v <= 0)
    out: dict[str, Any] = {"noisy": noisy}
    ok = {n: v for n, v in per.items() if n not in noisy}
    if "ours" not in ok:
        return out
    builtins = {n: ok[n] for n in G.BUILTINS if n in ok}
    if builtins:
        best = min(builtins, key=lambda n: builtins[n])
        out["best_builtin"] = best
        out["ratio_to_best_builtin"] = ok["ours"] / builtins[best]
    if "per_row" in ok:
        out["speedup_vs_per_row"] = ok["per_row"] / ok["ours"]
    if "sklearn" in ok:
        out["ratio_to_sklearn"] = ok["ours"] / ok["sklearn"]
    cpu = {n: r.get("per_iter_cpu") for n, r in results.items()}
    cpu_builtins = {n: v for n, v in cpu.items() if n in G.BUILTINS and v and v > 0}
    if cpu_builtins and cpu.get("ours") and cpu["ours"] > 0:
        best = min(cpu_builtins, key=lambda n: cpu_builtins[n])
        out["cpu_best_builtin"] = best
        out["cpu_ratio_to_best_builtin"] = cpu["ours"] / cpu_builtins[best]
    return out


def run_cell(spark: SparkSession, settings: G.Settings, cell: G.Cell,
             sampler: MemorySampler) -> dict[str, Any]:
    """Measure one cell; every failure is recorded in the result, not raised."""
    out: dict[str, Any] = {"cell": cell.key, "backend": "classic", "n": cell.n, "d": cell.d,
                           "k": cell.k, "raw_bytes": cell.raw_bytes, "status": "ok"}
    if cell.sparse:
        out["nnz"] = cell.nnz
    reason = G.skip_reason(cell, settings.max_nd)
    if reason:
        out.update(status="skipped", reason=reason)
        log(f"{cell.key}: skipped ({reason})")
        return out
    sc = spark.sparkContext
    t_cell = time.perf_counter()
    before = cached_rdds(sc)
    comps: list[C.Competitor] = []
    data = None
    try:
        sampler.set_phase(f"{cell.key}:data")
        log(f"{cell.key}: generating {cell.n} x {cell.d}"
            f"{f' (~{cell.nnz} non-zeros a row)' if cell.sparse else ''} on the executors")
        data = (textgen.generate if cell.sparse else generate)(
            spark, cell, settings.seed, settings.partitions)
        out["data"] = {
            "seconds": data.seconds,
            "partitions": data.df.rdd.getNumPartitions(),
            "input_cache_bytes": new_cache_bytes(before, cached_rdds(sc)),
        }
        if isinstance(data, textgen.TextData):
            out["data"].update(data.facts())
        out["skipped_competitors"] = {}
        prepared: dict[str, dict[str, Any]] = {}
        for name in settings.competitors:
            why = G.competitor_skip_reason(name, cell)
            if why:
                out["skipped_competitors"][name] = why
                continue
            comp = C.COMPETITOR_CLASSES[name](data, settings.seed)
            sampler.set_phase(f"{cell.key}:prepare")
            b = cached_rdds(sc)
            t0 = time.perf_counter()
            comp.prepare()
            comps.append(comp)
            prepared[name] = {"seconds": time.perf_counter() - t0,
                              "cache_bytes": new_cache_bytes(b, cached_rdds(sc))}
        hooks = _classic_hooks(spark, sampler)
        results, centers = _timed_rounds(hooks, settings, cell, comps, sampler)
        for name, p in prepared.items():
            results[name]["prepare"] = p
        out["competitors"] = results
        out["centers_check"] = _check_centers(results, centers)
        out.update(_ratios(results))
        if "ours" in settings.competitors:
            out.update(_default_fit_and_transform(hooks, settings, data, sampler))
    except Exception as e:
        record_failure(out, e, cell.key)
    finally:
        sampler.set_phase("idle")
        for comp in comps:
            try:
                comp.release()
            except Exception as e:  # keep releasing the rest
                log(f"{cell.key}: release of {comp.name} failed: {e}")
        if data is not None:
            data.unpersist()
        leftover = [r for i, r in cached_rdds(sc).items() if i not in before]
        out["leftover_cached_rdds"] = [f"{r.id}:{r.name[:80]}" for r in leftover]
        if leftover:
            log(f"{cell.key}: {len(leftover)} RDDs still cached after the cell: unpersisting")
            for rdd_id in (r.id for r in leftover):
                sc._jsc.sc().unpersistRDD(rdd_id, True)  # type: ignore[union-attr]
    out["memory"] = _memory(out, sampler, cell)
    out["seconds"] = time.perf_counter() - t_cell
    return out


def record_failure(out: dict[str, Any], e: Exception, name: str) -> None:
    """Mark the cell result ``out`` failed with ``e`` (message and traceback), and say so."""
    out["status"] = "error"
    out["error"] = f"{type(e).__name__}: {e}"[:2000]
    out["traceback"] = traceback.format_exc()[-4000:]
    log(f"{name}: FAILED: {out['error'][:300]}")


def _memory(out: dict[str, Any], sampler: MemorySampler, cell: G.Cell) -> dict[str, Any]:
    peaks = {k.split(":", 1)[1]: v for k, v in sampler.summary()["phases"].items()
             if k.startswith(cell.key + ":")}
    comps = out.get("competitors", {})
    cache = {}
    for name, res in comps.items():
        fit_cache = res.get("fit_cache", {})
        cache[name] = {
            "prepared_bytes": res.get("prepare", {}).get("cache_bytes", 0),
            "during_fit_bytes": fit_cache.get("peak_bytes"),
            "during_fit_spark_storage_bytes": fit_cache.get("peak_spark_storage_bytes"),
            "during_fit_host_file_bytes": fit_cache.get("peak_host_file_bytes"),
        }
    ours_cache = cache.get("ours", {}).get("during_fit_bytes")
    sparse: dict[str, Any] = {}
    if cell.sparse:  # our block files against the data's CSR storage (the dense-size ratio
        # would be meaningless here)
        blocks = comps.get("ours", {}).get("fit_cache", {}).get("peak_block_file_bytes")
        nonzero = out.get("data", {}).get("nonzero_bytes")
        sparse = {"block_file_bytes": blocks, "nonzero_bytes": nonzero,
                  "block_ratio": blocks / nonzero if blocks and nonzero else None}
    return {
        "raw_bytes": cell.raw_bytes,
        "input_cache_bytes": out.get("data", {}).get("input_cache_bytes"),
        "ours_cache_bytes": ours_cache,
        "ours_cache_spark_bytes": cache.get("ours", {}).get("during_fit_spark_storage_bytes"),
        "ours_cache_host_file_bytes": cache.get("ours", {}).get("during_fit_host_file_bytes"),
        "ours_cache_ratio": (ours_cache / cell.raw_bytes) if ours_cache and not cell.sparse
        else None,
        "cache_by_competitor": cache,
        "peaks": peaks,
        **sparse,
    }


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def _register_by_value() -> None:
    """Functions of this package run on the executors (data generation, the walkthrough's
    closures); ship them by value. A Python worker imports ``benchmarks`` only where its
    working directory is the checkout (in local mode, started from the checkout root, it
    is; on a cluster's executors it is not). Functions of ``__main__`` go by value anyway."""
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(benchmarks)


def run(settings: G.Settings, out_path: Path, command: str) -> dict[str, Any]:
    """Measure every classic cell in a local session, then every Connect cell on a Connect
    server (:mod:`benchmarks.connect`); write the JSON after each cell."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "schema": R.SCHEMA_VERSION,
        "created": R.timestamp(),
        "command": command,
        "smoke": settings.smoke,
        "complete": False,
        "settings": settings.to_json(),
        "cells": [],
    }
    log(f"grid={settings.grid} backend={settings.backend} "
        f"cells={[c.key for c in settings.cells]} "
        f"connect cells={[c.key for c in settings.connect_cells]} "
        f"repeats={settings.repeats} m1={settings.m1} m2={settings.m2} -> {out_path}")
    if settings.cells:
        _run_classic(settings, record, out_path, t0)
    if settings.connect_cells:
        from benchmarks import connect

        connect.run(settings, record, out_path, t0)
    record["complete"] = True
    record["total_seconds"] = time.perf_counter() - t0
    record["targets"] = report.evaluate_targets(record)
    R.write_json(record, out_path)
    return record


def _run_classic(settings: G.Settings, record: dict[str, Any], out_path: Path,
                 t0: float) -> None:
    """Start a local session, measure the classic cells into ``record``, stop it."""
    from sparkml_lloyd.session import local_session

    if SparkSession.getActiveSession() is not None:
        log("warning: a SparkSession is already active; its driver memory is kept")
    _register_by_value()
    spark = local_session(settings.master, app_name="sparkml_lloyd-bench",
                          conf=settings.spark_conf, log_level="ERROR")
    try:
        record["environment"] = R.environment(spark)
        with MemorySampler(driver_jvm_pid(spark.sparkContext)) as sampler:
            for cell in settings.cells:
                record["cells"].append(run_cell(spark, settings, cell, sampler))
                record["total_seconds"] = time.perf_counter() - t0
                R.write_json(record, out_path)
            record["memory_overall"] = sampler.summary()["overall"]
    finally:
        spark.stop()


def exit_status(record: dict[str, Any]) -> int:
    """0 when every cell ran and all centers agreed, else 1."""
    cells = record["cells"]
    if any(c["status"] == "error" for c in cells):
        return 1
    if any(c.get("centers_check", {}).get("passed") is False for c in cells):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.run`` (and so of ``sparkml-lloyd bench``)."""
    args = parse_args(argv)
    if args.report_only:
        try:
            parts = [(path, R.read_json(path)) for path in args.report_only]
            record = parts[0][1] if len(parts) == 1 else R.merge(parts)
        except (OSError, ValueError) as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        record["targets"] = report.evaluate_targets(record)
        md, png = report.write_report(record, args.docs_dir, args.report_only[0])
        log(f"wrote {md} and {png}")
        return 0
    try:
        settings = build_settings(args)
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    out_path = args.out_dir / f"{R.timestamp()}.json"
    command = f"{PROG} " + " ".join(sys.argv[1:] if argv is None else argv)
    record = run(settings, out_path, command)
    md, png = report.write_report(record, args.docs_dir, out_path)
    log(f"wrote {out_path}, {md} and {png} in {record['total_seconds']:.0f}s")
    print(report.summary_text(record))
    return exit_status(record)


if __name__ == "__main__":
    import warnings

    # pandas 3 works (the oracle tests check the Arrow paths); pyspark still warns once per
    # UDF it builds.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                            category=FutureWarning)
    sys.exit(main())
