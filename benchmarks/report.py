"""The benchmark page (``docs/benchmarks.md``), its plot (``docs/images/benchmarks.png``) and
the pass/fail verdict of every performance target, all computed from a result record alone,
so ``--report-only RESULT.json`` regenerates them without running anything.

The page's sections are about the dense cells (a real run's page also shows the newest real
run of ``benchmarks/choosing_k.py``, :mod:`benchmarks.report_choosing_k`, and one short run
per pyspark line, :mod:`benchmarks.report_lines`); a record with
sparse cells also gets the *Sparse features* section and its targets from
:mod:`benchmarks.report_sparse`, a record with cells measured on a Spark Connect server the
*Spark Connect* section from :mod:`benchmarks.report_connect`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.grid import COMPETITORS, LABELS, LONGER_RUNS, format_count, format_dim
from benchmarks.record import REPO_ROOT, cell_id

#: Timing targets are judged only on cells this large: smaller cells measure Spark's fixed
#: per-job overhead more than the algorithm.
JUDGED_MIN_N = 1_000_000
#: The per-row floor target is judged where the walkthrough runs at this size or more.
PER_ROW_MIN_N = 100_000
#: "Linear in n": ours per iteration at 4e6 may cost at most this much more *per row* than
#: at 1e6 (1.0 = exactly linear; below 1.0 = sub-linear, i.e. fixed overhead amortised).
LINEARITY_SLACK = 1.2

PASS, FAIL, NOT_MEASURED, NOT_JUDGED = "PASS", "FAIL", "not measured", "not judged (smoke run)"
TOO_SMALL = "not judged (cells too small)"


@dataclass
class Target:
    """One performance target and its verdict on a record."""

    id: str
    description: str
    limit: str
    value: str
    status: str
    detail: str = ""


#: A record read as its sparse cells (:func:`benchmarks.report_sparse.view`) has this key set
#: to ``"sparse"``, as its Spark Connect cells (:func:`benchmarks.report_connect.view`) to
#: ``"connect"``: the page's tables and targets then cover those cells.
VIEW_KEY = "_view"


def _kind(cell: dict[str, Any]) -> str:
    """``"connect"`` for a cell measured on a Spark Connect server, else ``"sparse"`` or
    ``"dense"`` by its data."""
    if cell.get("backend") == "connect":
        return "connect"
    return "sparse" if cell.get("nnz") is not None else "dense"


def _cells(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells that ran: the dense classic ones, or those of a view (sparse, connect)."""
    view = record.get(VIEW_KEY, "dense")
    return [c for c in record.get("cells", []) if c.get("status") == "ok"
            and _kind(c) == view]


def _find(record: dict[str, Any], n: float, d: int, k: int) -> dict[str, Any] | None:
    for c in _cells(record):
        if (c["n"], c["d"], c["k"]) == (int(n), d, k):
            return c
    return None


def _judge(ok: bool, smoke: bool) -> str:
    if smoke:
        return NOT_JUDGED
    return PASS if ok else FAIL


def _ratio_target(record: dict[str, Any], cell: tuple[float, int, int], limit: float) -> Target:
    n, d, k = cell
    name = f"({_fmt_n(int(n))}, {d}, {k})"
    c = _find(record, n, d, k)
    value = c.get("ratio_to_best_builtin") if c else None
    t = Target(f"per_iter_{_fmt_n(int(n))}_{d}_{k}",
               f"per iteration, ours / best built-in at {name}", f"<= {limit}x",
               _fmt_x(value), NOT_MEASURED)
    if value is not None:
        t.status = _judge(value <= limit, record.get("smoke", False))
        t.detail = f"best built-in: {LABELS.get(c['best_builtin'], c['best_builtin'])}"
    return t


def _worst_target(record: dict[str, Any], tid: str, description: str, limit: float,
                  get: Callable[[dict[str, Any]], float | None], min_n: int,
                  higher_is_better: bool = False) -> Target:
    values = [(c["cell"], get(c)) for c in _cells(record) if c["n"] >= min_n]
    values = [(k, v) for k, v in values if v is not None]
    op = ">=" if higher_is_better else "<="
    t = Target(tid, description, f"{op} {limit}x", "-", NOT_MEASURED)
    if not values:
        small = [(c["cell"], get(c)) for c in _cells(record)]
        small = [(k, v) for k, v in small if v is not None]
        if small:
            t.value = ", ".join(f"{_fmt_x(v)} at {k}" for k, v in small)
            t.status = NOT_JUDGED if record.get("smoke") else TOO_SMALL
        return t
    worst_cell, worst = (min if higher_is_better else max)(values, key=lambda kv: kv[1])
    ok = worst >= limit if higher_is_better else worst <= limit
    t.value = f"{_fmt_x(worst)} (worst, at {worst_cell})"
    t.status = _judge(ok, record.get("smoke", False))
    t.detail = "; ".join(f"{k}: {_fmt_x(v)}" for k, v in values)
    return t


def prefixed(t: Target, prefix: str, description: str) -> Target:
    """``t`` as a target of a section of its own (sparse, Connect): its id prefixed, its
    description replaced."""
    return replace(t, id=prefix + t.id, description=description)


def _linearity(record: dict[str, Any]) -> Target:
    small, big = _find(record, 1e6, 20, 20), _find(record, 4e6, 20, 20)
    t = Target("linear_in_n", "ours per iteration linear in n, (1e6,20,20) -> (4e6,20,20)",
               f"T(4e6) / (4 x T(1e6)) <= {LINEARITY_SLACK}", "-", NOT_MEASURED)
    if small and big:
        a, b = small["competitors"]["ours"]["per_iter"], big["competitors"]["ours"]["per_iter"]
        if a and b and a > 0:
            scale = b / (4 * a)
            t.value = f"{scale:.2f} (T: {a:.3g}s -> {b:.3g}s, x{b / a:.2f} for x4 rows)"
            t.status = _judge(scale <= LINEARITY_SLACK, record.get("smoke", False))
    return t


def _correctness(record: dict[str, Any]) -> list[Target]:
    checks = [c.get("centers_check", {}) for c in _cells(record)]
    diffs = [c["max_rel_diff"] for c in checks if c.get("max_rel_diff") is not None]
    centers = Target(
        "centers_agree", "centers of ours = MLlib / scikit-learn / per-row (same C0)",
        "max rel. diff <= 1e-9", f"{max(diffs):.1e}" if diffs else "-", NOT_MEASURED)
    if diffs:
        centers.status = PASS if all(c.get("passed") is not False for c in checks) else FAIL
    early = []
    known = 0
    for c in _cells(record):
        for name, it in c.get("centers_check", {}).get("iterations", {}).items():
            if it.get("converged_before_m2") is not None:
                known += 1
            if it.get("converged_before_m2"):
                early.append(f"{name} at {c['cell']} ({it['num_iter']} < {it['m2']})")
    iters = Target("no_early_convergence", "no competitor converged before m2 iterations",
                   "all ran m2", "none early" if not early else ", ".join(early),
                   NOT_MEASURED if not known else (PASS if not early else FAIL))
    return [centers, iters]


def evaluate_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target's value and verdict (PASS / FAIL / not measured / not judged)."""
    targets = [
        _ratio_target(record, (1e6, 20, 20), 0.5),
        _ratio_target(record, (1e6, 100, 100), 0.5),
        _ratio_target(record, (1e6, 2, 3), 0.6),
        _linearity(record),
        _worst_target(record, "default_fit", "whole default fit, ours / built-in ml KMeans",
                      0.7, lambda c: c.get("default_fit", {}).get("ratio"), JUDGED_MIN_N),
        _worst_target(record, "per_row_floor",
                      "per iteration, per-row walkthrough / ours (speed-up)", 100,
                      lambda c: c.get("speedup_vs_per_row"), PER_ROW_MIN_N,
                      higher_is_better=True),
        _worst_target(record, "transform", "transform, ours / built-in KMeansModel", 1.0,
                      lambda c: c.get("transform", {}).get("ratio"), JUDGED_MIN_N),
        _worst_target(record, "cache_memory", "our cached data / raw n*d*8 bytes", 1.3,
                      lambda c: c.get("memory", {}).get("ours_cache_ratio"), 0),
        *_correctness(record),
    ]
    from benchmarks import report_connect, report_sparse  # they build on this module

    return ([asdict(t) for t in targets] + report_sparse.evaluate_targets(record)
            + report_connect.evaluate_targets(record))


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def _fmt_n(n: int) -> str:
    return format_count(n)


def _fmt_s(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}"


def _fmt_x(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}x"
    return f"{x:.2f}x" if abs(x) < 10 else f"{x:.1f}x"


def _fmt_bytes(b: float | None) -> str:
    if not b:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def _cell_name(c: dict[str, Any]) -> str:
    if c.get("nnz") is not None:
        return f"({_fmt_n(c['n'])}, {format_dim(c['d'])}, {c['k']}, ~{c['nnz']} nnz)"
    return f"({_fmt_n(c['n'])}, {c['d']}, {c['k']})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def demote(lines: list[str]) -> list[str]:
    """The page's sections one heading level lower, inside a section of their own."""
    return ["#" + ln if ln.startswith("##") else ln for ln in lines]


def _status_icon(status: str) -> str:
    return {PASS: "PASS", FAIL: "**FAIL**"}.get(status, status)


def _rel_path(path: Path | None) -> str:
    if path is None:
        return "-"
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return path.name


# --------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------


def _per_iteration_section(record: dict[str, Any], present: list[str]) -> list[str]:
    s = record["settings"]
    lines = [
        "## Per-iteration time",
        "",
        "Seconds per Lloyd iteration, `(T(maxIter=m2) - T(maxIter=m1)) / (m2 - m1)` with "
        "the cell's *m1 -> m2* (per-row walkthrough: `maxIter` "
        f"{s['per_row_m1']} vs {s['per_row_m2']}), median of the cell's "
        f"interleaved rounds ({_rounds_text(s)}); start-up and initialisation cancel. "
        "*Best built-in* is the fastest of mllib / ml row / ml block.",
        "",
    ]
    header = ["cell (n, d, k)", "m1 -> m2", "rounds"] + [LABELS[c] for c in present] + [
        "ours / best built-in", "ours / sklearn", "per-row / ours"]
    rows = []
    for c in _cells(record):
        comps = c.get("competitors", {})
        spark_like = [r for n, r in comps.items() if n != "per_row"]
        row = [_cell_name(c),
               f"{spark_like[0]['m1']} -> {spark_like[0]['m2']}" if spark_like else "-",
               str(len(spark_like[0]["t_m1"])) if spark_like else "-"]
        for name in present:
            row.append(_fmt_s(comps[name]["per_iter"]) if name in comps else "-")
        best = c.get("best_builtin")
        ratio = _fmt_x(c.get("ratio_to_best_builtin"))
        row.append(f"{ratio} ({best})" if best else ratio)
        row.append(_fmt_x(c.get("ratio_to_sklearn")))
        row.append(_fmt_x(c.get("speedup_vs_per_row")))
        rows.append(row)
    notes = [f"{_cell_name(c)}: {', '.join(c['noisy'])}" for c in _cells(record)
             if c.get("noisy")]
    if notes:
        notes = ["", "Non-positive per-iteration times (T(m2) <= T(m1): noise swamped the "
                 "iterations; no ratio is computed from them): " + "; ".join(notes) + "."]
    cpu_rows = []
    for c in _cells(record):
        comps = c.get("competitors", {})
        if not any("per_iter_cpu" in r for r in comps.values()):
            continue
        row = [_cell_name(c)]
        row += [_fmt_s(comps[n].get("per_iter_cpu")) if n in comps else "-" for n in present]
        best = c.get("cpu_best_builtin")
        ratio = _fmt_x(c.get("cpu_ratio_to_best_builtin"))
        cpu_rows.append([*row, f"{ratio} ({best})" if best else ratio])
    cpu = []
    if cpu_rows:
        cpu = [
            "",
            "CPU seconds per iteration, same difference, of the whole process tree (Python "
            "driver, driver JVM, Python workers; user + system time, the processes they "
            "reaped included). Context for the wall times: "
            "it hardly depends on other load on the machine, but it is not what the targets "
            "judge (an implementation may use fewer cores for longer).",
            "",
            *_table(["cell (n, d, k)", *[LABELS[n] for n in present],
                     "ours / best built-in"], cpu_rows),
        ]
    return [*lines, *_table(header, rows), *notes, *cpu, ""]


#: What follows the last iteration, as a time split records it: (key, column, meaning).
#: Runs timed by the iteration callback start it at the last iteration's report; older runs
#: timed the engine's log records, whose last one comes after the pass that measures the
#: final centers.
_AFTER_LAST: tuple[tuple[str, str, str], ...] = (
    ("after_last_iteration", "after the last iteration s",
     "*after the last iteration* from its report until `fit` returns (the pass that "
     "measures the final centers, release, model and summary)"),
    ("tail", "tail s",
     "*tail* (runs that timed the engine's log records) from its last record, which follows "
     "the pass that measures the final centers, until `fit` returns (release, model and "
     "summary)"),
)


def _time_split_section(record: dict[str, Any]) -> list[str]:
    splits = [(c, c["competitors"]["ours"]) for c in _cells(record)
              if c.get("competitors", {}).get("ours", {}).get("time_split")]
    after = [a for a in _AFTER_LAST if any(a[0] in o["time_split"] for _, o in splits)]
    rows = []
    for c, ours in splits:
        split = ours["time_split"]
        rows.append([_cell_name(c), _fmt_s(ours.get("median_t_m2")), _fmt_s(split["setup"]),
                     _fmt_s(split["iteration"]), *(_fmt_s(split.get(a[0])) for a in after),
                     _fmt_s(ours.get("per_iter"))])
    if not rows:
        return []
    return [
        "### Where our fit spends its time",
        "",
        "From the moments the fit reported its iterations during the `maxIter=m2` fits "
        "(its iteration callback; in older runs its log records, at the same moments), "
        "medians: *set-up* until the first iteration (the pass that prepares the blocks, "
        "initialisation, the first assignment pass), *per iteration* between iterations, "
        + "; ".join(a[2] for a in after) + ".",
        "",
        *_table(["cell", "T(m2) s", "set-up s", "per iteration s (reports)",
                 *(a[1] for a in after), "per iteration s (difference)"], rows),
        "",
    ]


def _correctness_section(record: dict[str, Any], present: list[str]) -> list[str]:
    lines = [
        "## Same results",
        "",
        "Ours, MLlib, scikit-learn and the per-row walkthrough all start from the same `C0` "
        "(the first k rows), so their centers must agree: max |a - b| / max |b| over the "
        "centers, at every common `maxIter`. The ml `KMeans` API cannot take initial "
        "centers (`initMode=\"random\"`, fixed seed), so only its row and block solvers are "
        "compared with each other (informational). *Iterations at m2* is what each "
        "implementation reports for the larger `maxIter` (MLlib's Python API does not "
        "report it: inferred from its centers equalling ours).",
        "",
    ]
    header = ["cell", "vs mllib", "vs sklearn", "vs per-row", "ml row vs block",
              "iterations at m2", "pass"]
    rows = []
    for c in _cells(record):
        chk = c.get("centers_check", {})

        def worst(name: str, chk: dict[str, Any] = chk) -> str:
            vals = chk.get("ours_vs", {}).get(name, {})
            return f"{max(vals.values()):.1e}" if vals else "-"

        rb = chk.get("info", {}).get("ml_row_vs_ml_block", {})
        its = ", ".join(
            f"{n}={v['num_iter'] if v['num_iter'] is not None else '?'}"
            for n, v in chk.get("iterations", {}).items()
        )
        passed = chk.get("passed")
        rows.append([_cell_name(c), worst("mllib"), worst("sklearn"), worst("per_row"),
                     f"{max(rb.values()):.1e}" if rb else "-", its,
                     "-" if passed is None else ("yes" if passed else "**NO**")])
    return [*lines, *_table(header, rows), ""]


def _transform_calls(record: dict[str, Any]) -> str:
    counts = {len(c["transform"]["ours"]["raw"]) for c in _cells(record) if c.get("transform")}
    return "/".join(str(n) for n in sorted(counts)) or "0"


def _spread(raw: list[float]) -> str:
    """The fastest and slowest of a model's timed calls: ``"0.43-0.68"``."""
    return f"{min(raw):.2f}-{max(raw):.2f}" if raw else "-"


def _first_calls(t: dict[str, Any]) -> str:
    """The untimed first transform of each model (older records have none)."""
    ours, builtin = t["ours"].get("first_call_seconds"), t["builtin"].get("first_call_seconds")
    if ours is None or builtin is None:
        return "-"
    return f"{_fmt_s(ours)} / {_fmt_s(builtin)}"


def _fit_transform_section(record: dict[str, Any]) -> list[str]:
    lines = [
        "## Whole default fit",
        "",
        "`LloydKMeans(k=k, seed=s).fit(df)` vs `pyspark.ml.clustering.KMeans(k=k, seed=s)"
        ".fit(df)`: k-means|| initialisation, `maxIter=20`, `tol=1e-4`, everything else "
        "default too; median seconds, iterations run. Cost: ours is measured against the "
        "final centers, the built-in's against the centers before its last update.",
        "",
    ]
    rows = []
    for c in _cells(record):
        f = c.get("default_fit")
        if not f:
            continue
        rows.append([
            _cell_name(c),
            f"{_fmt_s(f['ours']['seconds'])} ({f['ours']['num_iter'][-1]} it)",
            f"{_fmt_s(f['builtin']['seconds'])} ({f['builtin']['num_iter'][-1]} it)",
            _fmt_x(f["ratio"]),
            _fmt_x(f.get("cpu_ratio")),
            f"{f['cost_ratio']:.4f}",
        ])
    lines += _table(["cell", "ours s", "built-in s", "ours / built-in", "CPU ours / built-in",
                     "cost ours / built-in"], rows)
    lines += [
        "",
        "## Transform",
        "",
        "`model.transform(df).agg(F.sum(\"prediction\")).collect()` with both models holding "
        "the same centers (the built-in's default-fit centers); median seconds of "
        f"{_transform_calls(record)} interleaved calls per model after one first call per "
        "model, which is shown apart (ours builds Spark's model holding our centers there; "
        "the built-in's was built by its fit).",
    ]
    notes = {  # what an optional column means, said where some cell has it
        "ours_path": (
            " *Ours assigns with* is read from the plan of our transform: *Spark scorer + "
            "row rule* (since 1 Dec 2026) is Spark's own `LogisticRegressionModel` whose "
            "argmax is the nearest center (a decoy class 0 catches NaN and infinite rows), "
            "under the row rule as Spark Columns (stored values scanned only where the "
            "scorer gave class 0), on classic Spark and Spark Connect alike; *Spark predict "
            "+ row rule* (30 Nov-1 Dec 2026) was the `predict` of Spark's own `KMeansModel` "
            "holding our centers, "
            "called from the query's generated code (no UDF) inside `CASE WHEN <row is "
            "valid> THEN predict(features) ... END`, the row rule checked by one `x . x` "
            "pass over each vector (its stored values scanned only where that is not "
            "finite) and applied per `handleInvalid` (shown; `\"error\"` is the default); "
            "*Spark UDF + row rule* (runs before 30 Nov 2026) was Spark's assignment UDF "
            "inside the same `CASE`, the rule two scans of every vector's stored values; "
            "*Arrow UDF* is our numpy kernel in an Arrow UDF (large `k x d`)."),
        "aa_ratio": (
            " *Built-in again / built-in (A/A)*: a second copy of Spark's model with the same "
            "centers (`toSparkModel()` of ours), timed in the same interleaving: how far two "
            "identical transforms land apart in this run, the scale on which to read *ours / "
            "built-in* (runs before 1 Dec 2026 did not time it)."),
        "floor": (
            " *Arrow UDF returning 0 / built-in*: a UDF that ships the rows as ours does (the "
            "same input columns, the same UDF kind) and returns 0 for every row, timed "
            "interleaved with the two models (`benchmarks.connect.ArrowFloor`): what any "
            "transform through a Python UDF costs on this server before it computes "
            "anything."),
    }
    present = {key for c in _cells(record) for key in c.get("transform", {}) if key in notes}
    lines[-1] += "".join(text for key, text in notes.items() if key in present)
    paths, aa, floors = ("ours_path" in present), ("aa_ratio" in present), ("floor" in present)
    lines.append("")
    rows = []
    for c in _cells(record):
        t = c.get("transform")
        if not t:
            continue
        rows.append([
            _cell_name(c), _fmt_s(t["ours"]["seconds"]), _fmt_s(t["builtin"]["seconds"]),
            _fmt_x(t["ratio"]),
            *([_fmt_x(t.get("aa_ratio")) if "aa_ratio" in t else "-"] if aa else []),
            *([_fmt_x(t.get("floor_ratio")) if "floor" in t else "-"] if floors else []),
            _fmt_x(t.get("cpu_ratio")),
            f"{t['rows_per_second_ours'] / 1e6:.3g} M",
            "yes" if t["predictions_agree"] else "**NO**",
            f"{_spread(t['ours']['raw'])} / {_spread(t['builtin']['raw'])}",
            _first_calls(t),
            *([_transform_path(t)] if paths else []),
        ])
    lines += _table(["cell", "ours s", "built-in s", "ours / built-in",
                     *(["built-in again / built-in (A/A)"] if aa else []),
                     *(["Arrow UDF returning 0 / built-in"] if floors else []),
                     "CPU ours / built-in",
                     "ours rows/s", "same prediction sum", "calls ours / built-in: min-max s",
                     "first call ours / built-in s",
                     *(["ours assigns with"] if paths else [])], rows)
    return [*lines, ""]


def _transform_path(t: dict[str, Any]) -> str:
    """How our transform assigned (older records do not say)."""
    path = {"spark-scorer": "Spark scorer + row rule",
            "jvm-predict": "Spark predict + row rule", "jvm": "Spark UDF + row rule",
            "arrow": "Arrow UDF"}.get(t.get("ours_path", ""))
    if path is None:
        return "-"
    return f"{path} (`handleInvalid=\"{t.get('ours_handle_invalid', '?')}\"`)"


def probed_fit_text(record: dict[str, Any]) -> str:
    """Which fit of each competitor was probed for what it caches."""
    return ("an untimed warm-up fit" if record["settings"].get("warmup", True)
            else "the first timed `maxIter=m1` fit (warm-up off)")


def _memory_section(record: dict[str, Any]) -> list[str]:
    probed = probed_fit_text(record)
    lines = [
        "## Memory",
        "",
        "What each competitor holds besides the caller's cached DataFrame (*input cache*), "
        f"polled every 50 ms during {probed}: Spark's storage info for RDDs it "
        "persisted (`memSize + diskSize`), plus host files (`/dev/shm`, temp dir) its Python "
        "workers map or open; *prepared* caches (MLlib's RDD of vectors) are included. "
        "*Copies* counts the input cache plus ours, in units of the raw `n*d*8` bytes, while "
        "our `fit` runs (ours is released when `fit` returns). Peaks are resident memory "
        "sampled every 0.2 s: the driver JVM (also the executor in local mode), "
        "the Python driver (which holds scikit-learn's copy), and the sum over Python workers "
        "as PSS (pages shared between forked workers, or mapped from `/dev/shm`, are split "
        "between their users, so the sum is not inflated).",
        "",
    ]
    rows = []
    for c in _cells(record):
        m = c.get("memory", {})
        cache = m.get("cache_by_competitor", {})

        def cached(name: str, cache: dict[str, Any] = cache) -> str:
            v = cache.get(name)
            if not v:
                return "-"
            return _fmt_bytes((v.get("prepared_bytes") or 0) + (v.get("during_fit_bytes") or 0))

        peaks = m.get("peaks", {})
        ours_pss = peaks.get("ours", {}).get("workers_pss")
        all_pss = max((p.get("workers_pss", 0) for p in peaks.values()), default=0)
        jvm = max((p.get("driver_jvm_rss", 0) for p in peaks.values()), default=0)
        py = max((p.get("driver_python_rss", 0) for p in peaks.values()), default=0)
        ours = m.get("ours_cache_bytes")
        split = ""
        if ours:
            split = (f" (Spark {_fmt_bytes(m.get('ours_cache_spark_bytes')) or '0'}, files "
                     f"{_fmt_bytes(m.get('ours_cache_host_file_bytes'))})")
        raw = m.get("raw_bytes") or 0
        copies = ((m.get("input_cache_bytes") or 0) + (ours or 0)) / raw if raw else None
        rows.append([
            _cell_name(c), _fmt_bytes(raw), _fmt_bytes(m.get("input_cache_bytes")),
            _fmt_bytes(ours) + split, _fmt_x(m.get("ours_cache_ratio")),
            "-" if copies is None else f"{copies:.2f}",
            cached("mllib"), cached("ml_block"), _fmt_bytes(jvm), _fmt_bytes(py),
            _fmt_bytes(ours_pss), _fmt_bytes(all_pss),
        ])
    lines += _table(["cell", "raw n*d*8", "input cache", "ours cache", "ours / raw", "copies",
                     "mllib cache", "ml block cache", "peak JVM RSS", "peak Python driver",
                     "peak workers (ours)", "peak workers (any)"], rows)
    return [*lines, ""]


def _skipped_section(record: dict[str, Any]) -> list[str]:
    lines = []
    for c in record.get("cells", []):
        if c.get("status") == "skipped":
            lines.append(f"- cell {_cell_name(c)}: skipped, {c['reason']}")
        elif c.get("status") == "error":
            lines.append(f"- cell {_cell_name(c)}: **failed**: `{c.get('error', '')[:300]}`")
    seen: dict[str, str] = {}
    for c in (c for c in record.get("cells", []) if c.get("status") == "ok"):
        for name, why in c.get("skipped_competitors", {}).items():
            seen.setdefault(f"{LABELS.get(name, name)}: {why}", _cell_name(c))
    lines += [f"- {what}" for what in seen]
    leftovers = [c["cell"] for c in record.get("cells", []) if c.get("leftover_cached_rdds")]
    if leftovers:
        lines.append(f"- cached RDDs were left over (and then unpersisted) after cells "
                     f"{', '.join(leftovers)}")
    if not lines:
        return []
    return ["## Skipped", "", *lines, ""]


def _rounds_text(settings: dict[str, Any]) -> str:
    """Rounds per cell: ``"3"``, or ``"3 or 1"`` for runs merged with different rounds."""
    repeats = settings["repeats"]
    return " or ".join(map(str, repeats)) if isinstance(repeats, list) else str(repeats)


def _environment_section(record: dict[str, Any], json_path: Path | None) -> list[str]:
    env = record.get("environment", {})
    s = record["settings"]
    git = env.get("git", {})
    v = env.get("versions", {})
    mach = env.get("machine", {})
    conf = env.get("spark_conf", {})
    mem = mach.get("memory_bytes")
    keep = ("spark.master", "spark.driver.memory", "spark.sql.shuffle.partitions",
            "spark.default.parallelism", "spark.driver.maxResultSize")
    if record.get("parts"):
        runs = [f"- merged from {len(record['parts'])} runs on this machine: "
                f"`{record.get('command', '-')}`"]
        runs += [
            f"  - `{p['result']}`: commit `{(p.get('commit') or '-')[:12]}`"
            f"{' (with uncommitted changes)' if p.get('dirty') else ''}, created "
            f"{p.get('created', '-')}, {p.get('total_seconds') or 0:.0f} s, "
            f"{p['repeats']} round(s), cells {', '.join(f'({c})' for c in p['cells'])}; "
            f"`{p.get('command', '-')}`"
            for p in record["parts"]
        ]
        if record.get("superseded"):
            runs.append("- measured again in a newer run, shown from it: " + ", ".join(
                f"({x['cell']}) of `{x['result']}`" for x in record["superseded"]))
        changes = record.get("code_changes")
        runs.append(
            "- package and benchmark code between the runs' commits: "
            + ("git could not compare them" if changes is None
               else "identical" if not changes
               else "differs in " + ", ".join(f"`{f}`" for f in changes)))
    else:
        runs = [
            f"- result: `{_rel_path(json_path)}` (every figure and per-round raw time), "
            f"created {record.get('created', '-')}, {record.get('total_seconds', 0):.0f} s",
            f"- command: `{record.get('command', '-')}`",
            f"- commit `{(git.get('commit') or '-')[:12]}`"
            f"{' (with uncommitted changes)' if git.get('dirty') else ''}",
        ]
    return [
        "## Environment",
        "",
        *runs,
        f"- machine: {mach.get('nproc')} cores, "
        f"{(mem or 0) / 2**30:.0f} GiB, {mach.get('cpu_model')}",
        f"- versions: Python {v.get('python')}, pyspark {v.get('pyspark')}, Java "
        f"{v.get('java')}, numpy {v.get('numpy')}, pyarrow {v.get('pyarrow')}, "
        f"scikit-learn {v.get('scikit-learn')}",
        *([f"- JVM BLAS (netlib): `{blas.get('used')}`; native "
           f"{'`' + blas['native'] + '`' if blas.get('native') else 'not loaded'}"]
          if (blas := env.get("jvm_blas")) else []),
        "- Spark: " + ", ".join(f"`{k}={conf[k]}`" for k in keep if k in conf)
        + f"; {s['partitions']} input partitions for every competitor",
        f"- grid `{s['grid']}`, {_rounds_text(s)} round(s), m1={s['m1']}, m2={s['m2']}"
        + (" (raised to m1 + "
           + ", m1 + ".join(f"{gap} where n*d*k <= {limit:.0e}" for limit, gap in LONGER_RUNS)
           + ": cheap iterations need more of them to rise above start-up noise)"
           if s.get("longer_runs") else "")
        + f", seed {s['seed']}, warm-up {'on' if s['warmup'] else 'off'}",
        "",
    ]


REPRODUCE = """## Reproduce

From the root of a source checkout with the `dev` extra installed (`pip install -e ".[dev]"`);
`sparkml-lloyd bench ARGS` runs the same command there.

```bash
# the target cells, dense then sparse, 3 interleaved rounds: about 3-4 hours on 2 cores;
# needs a quiet machine
python -m benchmarks.run --grid default
# the dense target cells only: about an hour
python -m benchmarks.run --grid default --features dense
# the two sparse target cells only, (1e5, 2^18, 20, ~30 nnz) and (1e6, 2^18, 100, ~30 nnz):
# about 2-3 hours (estimated from cells of 5e3-1e5 documents), most of it the built-ins at
# (1e6, 2^18, 100): 20-60 s an iteration, 10-20 min a default fit; with --repeats 1 about an
# hour. 100 centers of 2^18 features are 210 MB, held several times on the driver: 12g
python -m benchmarks.run --grid default --features sparse --driver-memory 12g
# the whole n x d x k grid where feasible, and the sparse cells: several hours
python -m benchmarks.run --grid full
# Spark Connect: (1e6, 20, 20) and (1e6, 100, 100) on a Connect server over local[2] started
# for the run (12g, as the classic runs), ours vs ml KMeans row and block, 3 interleaved
# rounds: about 30-40 minutes (estimated from the classic run's times of the built-ins;
# (1e6, 100, 100) takes most of it, the built-in's default fit alone ~10 min). Its page has
# only the Connect section: merge it with classic runs of the same machine and settings (the
# Connect cells stay apart from the classic cells of the same n, d, k) ...
python -m benchmarks.run --grid default --backend connect
python -m benchmarks.run --report-only benchmarks/results/<classic>.json ... \\
    benchmarks/results/<connect>.json
# ... or measure the dense target cells classic, then on Connect, in one run: 1.5-2 hours
python -m benchmarks.run --grid default --features dense --backend both
# CI-sized check (1-2 minutes; with the Connect cell about a minute more), into a scratch
# directory (tests/test_benchmarks_smoke.py runs it with --backend both)
python -m benchmarks.run --grid smoke --out-dir /tmp/bench --docs-dir /tmp/bench
# chosen cells, more rounds, a subset of competitors; 'n,d,k,nnz' is a sparse cell
python -m benchmarks.run --cells "1e6,20,20;4e6,20,20" --repeats 5 --competitors ours,mllib
python -m benchmarks.run --cells "1e5,2^18,20,30" --competitors ours,mllib,ml_row
# rebuild this page and the plot from a stored result, without running anything
python -m benchmarks.run --report-only benchmarks/results/<timestamp>.json
# one page from several runs on one machine and settings (the full grid in pieces, or cells
# measured again: a cell is shown from the newest run that has it)
python -m benchmarks.run --report-only benchmarks/results/<a>.json benchmarks/results/<b>.json
```

Data: Gaussian blobs drawn on the executors (`spark.range` + `mapInArrow`, a seeded numpy
generator per chunk: a pure function of seed, n, d, k), blob centers about 1.4 standard
deviations apart, so blobs overlap and Lloyd needs many iterations (more than each cell's
m2; the table checks it); cached and counted
before any timer, as are MLlib's RDD of vectors, the walkthrough's RDD of points and the
collected array for scikit-learn. Every timed call runs after a Python and JVM garbage
collection; competitors take turns in a rotating order, round after round. Sparse cells:
text-like documents drawn the same way (`benchmarks/textgen.py`: hashed, weighted term counts
of documents on k topics, a pure function of seed, n, d, nnz, k), cached as `SparseVector`s;
scikit-learn gets the collected CSR matrix.

Not run: scikit-learn where n*d > 1e8 (sparse: n*nnz); the per-row walkthrough except at
d = 2, n <= 1e5, k <= 20 (one filter pass per cluster: ~6 min per iteration at k = 100), and
never on sparse cells;
in `--grid full`, the cells (4e6, 100, k): 3.2 GB raw, held about four times at once
(DataFrame cache, MLlib's cached RDD, the competitor's own copy, worker copies), which does
not fit a 12g driver heap on a 24 GiB machine. On Spark Connect (`--backend connect`): ours
and ml KMeans (row, block) only. The code is in `benchmarks/` (`grid.py`, `datagen.py`,
`textgen.py`, `competitors.py`, `measure.py`, `storage.py`, `record.py`, `report.py`,
`report_sparse.py`, `report_connect.py`, `run.py`, `connect.py`; the Connect server from
`tests/connect_server.py`).
"""


#: Hand-written reading of the latest real run (why a target misses, what would close it);
#: embedded in the page of real runs, so it survives regeneration.
ANALYSIS = Path(__file__).with_name("ANALYSIS.md")


def render_markdown(record: dict[str, Any], json_path: Path | None = None,
                    image: str = "images/benchmarks.png") -> str:
    """The whole page as Markdown."""
    targets = record.get("targets") or evaluate_targets(record)
    present = [n for n in COMPETITORS
               if any(n in c.get("competitors", {}) for c in _cells(record))]
    if record.get("smoke"):
        flag = ("> **Smoke run.** Tiny data for CI: the timings below measure Spark's fixed "
                "overheads, not the algorithms, and the performance targets are not judged. "
                "Run `python -m benchmarks.run --grid default` for real figures.")
    else:
        s = record["settings"]
        cells = ", ".join(f"({c})" for c in s["cells"])
        runs = (f"{len(record['parts'])} runs merged (see Environment)" if record.get("parts")
                else f"grid `{s['grid']}`")
        flag = (f"> **Real run** ({runs}, cells {cells}), {_rounds_text(s)} interleaved "
                "round(s) per cell, medians. Timing "
                f"targets are judged on cells with n >= {_fmt_n(JUDGED_MIN_N)} (the per-row "
                f"floor at n >= {_fmt_n(PER_ROW_MIN_N)}).")
    if not record.get("complete", True):
        flag += " **Incomplete:** the run stopped early; only finished cells are shown."
    lines = [
        "# Benchmarks",
        "",
        "`LloydKMeans` against Spark's built-in k-means (`pyspark.mllib` `KMeans.train`, "
        "`pyspark.ml` `KMeans` with the row and the block solver), scikit-learn's Lloyd on one "
        "machine, and the walkthrough's per-row RDD code, all in one run on the same cached "
        f"data, on pyspark {record.get('environment', {}).get('versions', {}).get('pyspark')} "
        "(each ratio is to that version's built-in). Generated by `python -m benchmarks.run`; "
        "do not edit by hand.",
        "",
        flag,
        "",
        "## Targets",
        "",
    ]
    from benchmarks import report_connect, report_sparse  # they build on this module

    sparse = report_sparse.section(record, targets)
    connect = report_connect.section(record, targets)
    # a sparse-only or Connect-only run has no dense sections
    dense = bool(_cells(record)) or not (sparse or connect)
    if dense:
        lines += _table(["target", "limit", "measured", "verdict", "detail"], [
            [t["description"], t["limit"], t["value"], _status_icon(t["status"]), t["detail"]]
            for t in targets
            if not t["id"].startswith((report_sparse.PREFIX, report_connect.PREFIX))
        ])
    for part, text in ((sparse, "Targets of the sparse cells: see "
                                "[Sparse features](#sparse-features)."),
                       (connect, "Targets on Spark Connect: see [Spark Connect](#spark-connect).")):
        if part:
            lines += [*([""] if lines[-1] else []), text]
    lines += ["", f"![per-iteration seconds per cell]({image})", ""]
    if not record.get("smoke") and ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    if dense:
        lines += _per_iteration_section(record, present)
        lines += _time_split_section(record)
        lines += _correctness_section(record, present)
        lines += _fit_transform_section(record)
        lines += _memory_section(record)
    lines += sparse
    lines += connect
    if not record.get("smoke"):  # runs of their own: choosing k, one per pyspark line
        from benchmarks import report_choosing_k, report_lines

        lines += report_choosing_k.section(report_choosing_k.newest())
        lines += report_lines.section(report_lines.newest_per_version())
    lines += _skipped_section(record)
    lines += _environment_section(record, json_path)
    lines += [REPRODUCE]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------


def render_plot(record: dict[str, Any], path: Path) -> Path:
    """Grouped bars of per-iteration seconds per cell (log scale), and ours / built-in
    ratios per cell (per iteration vs best built-in, default fit, transform)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    def log_axis(axis: Any) -> None:
        axis.set_yscale("log")
        axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axis.yaxis.set_minor_formatter(NullFormatter())

    cells = (_cells(record) or _cells({**record, VIEW_KEY: "sparse"})  # a sparse-only run
             or _cells({**record, VIEW_KEY: "connect"}))  # or a Connect-only one
    present = [n for n in COMPETITORS if any(n in c.get("competitors", {}) for c in cells)]
    if len(cells) > 8:  # the full grid: one panel above the other, room for every label
        fig, (ax, bx) = plt.subplots(2, 1, figsize=(max(14.0, 0.6 * len(cells)), 11))
        tick = {"rotation": 45, "ha": "right"}
    else:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5.5),
                                     gridspec_kw={"width_ratios": [3, 2]})
        tick = {"rotation": 20}
    width = 0.8 / max(len(present), 1)
    colors = dict(zip(COMPETITORS, ["#d62728", "#1f77b4", "#2ca02c", "#17becf", "#9467bd",
                                    "#7f7f7f"], strict=True))
    names = [_cell_name(c) for c in cells]
    lowest = math.inf
    for i, comp in enumerate(present):
        xs, ys = [], []
        for j, c in enumerate(cells):
            v = c.get("competitors", {}).get(comp, {}).get("per_iter")
            if v is not None and v > 0:
                xs.append(j + (i - (len(present) - 1) / 2) * width)
                ys.append(v)
        if not ys:  # nothing positive to draw (not run, or swamped by noise)
            continue
        ax.bar(xs, ys, width, label=LABELS[comp], color=colors[comp])
        lowest = min([*ys, lowest])
    if lowest < math.inf:
        ax.set_ylim(bottom=lowest / 3)
    log_axis(ax)
    ax.set_xlim(-0.5, len(cells) - 0.5)
    ax.set_xticks(range(len(cells)), names, **tick)
    ax.set_ylabel("seconds per iteration (log)")
    ax.set_title("Per-iteration time (lower is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)

    series = [
        ("per iteration vs best built-in", "#1f77b4", lambda c: c.get("ratio_to_best_builtin")),
        ("default fit", "#ff7f0e", lambda c: c.get("default_fit", {}).get("ratio")),
        ("transform", "#2ca02c", lambda c: c.get("transform", {}).get("ratio")),
    ]
    w = 0.8 / len(series)
    seen: list[float] = []
    for i, (label, color, get) in enumerate(series):
        xs, ys = [], []
        for j, c in enumerate(cells):
            v = get(c)
            if v is not None and v > 0:
                xs.append(j + (i - (len(series) - 1) / 2) * w)
                ys.append(v)
        seen += ys
        if ys:
            bx.bar(xs, ys, w, label=label, color=color)
    if seen:  # bars grow from the bottom of a log axis: leave room below the smallest
        bx.set_ylim(min(0.1, min(seen) / 2), max(2.0, max(seen) * 1.5))
    bx.axhline(1.0, color="black", linestyle="--", linewidth=1)
    log_axis(bx)
    bx.set_xlim(-0.5, len(cells) - 0.5)
    bx.set_xticks(range(len(cells)), names, **tick)
    bx.set_ylabel("ours / built-in (log; < 1: ours faster)")
    bx.set_title("Ratios to Spark's built-in")
    bx.legend(fontsize=8)
    bx.grid(axis="y", which="both", alpha=0.3)
    title = "sparkml_lloyd benchmarks"
    if record.get(VIEW_KEY) == "sparse" or (not _cells(record) and any(
            _kind(c) == "sparse" for c in cells)):
        title += ": sparse features"
    elif any(_kind(c) == "connect" for c in cells):
        title += ": Spark Connect"
    if record.get("smoke"):
        title += " (SMOKE RUN: tiny data, not meaningful)"
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(record: dict[str, Any], docs_dir: Path,
                 json_path: Path | None = None) -> tuple[Path, Path]:
    """Write ``benchmarks.md`` and ``images/benchmarks.png`` under ``docs_dir`` (and, for a
    record with dense and sparse cells, the sparse cells' ``images/benchmarks_sparse.png``;
    for a real run, the choosing-k plot of :mod:`benchmarks.report_choosing_k`)."""
    from benchmarks import report_sparse  # it builds on this module

    docs_dir = Path(docs_dir)
    png = render_plot(record, docs_dir / "images" / "benchmarks.png")
    if _cells(record) and report_sparse.sparse_cells(record):
        render_plot(report_sparse.view(record), docs_dir / report_sparse.IMAGE)
    if not record.get("smoke"):
        from benchmarks import report_choosing_k

        report_choosing_k.render_plot(report_choosing_k.newest(),
                                      docs_dir / report_choosing_k.IMAGE)
    md = docs_dir / "benchmarks.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(render_markdown(record, json_path) + "\n")
    return md, png


def summary_text(record: dict[str, Any]) -> str:
    """A few lines for the terminal: per-iteration ratios and target verdicts."""
    lines = []
    for c in record.get("cells", []):
        name = cell_id(c)
        if c.get("status") != "ok":
            lines.append(f"{name}: {c['status']} {c.get('reason') or c.get('error', '')}")
            continue
        per = ", ".join(f"{n}={_fmt_s(r['per_iter'])}s"
                        for n, r in c.get("competitors", {}).items())
        lines.append(f"{name}: per iteration {per}; ours/best built-in "
                     f"{_fmt_x(c.get('ratio_to_best_builtin'))}; centers max rel diff "
                     f"{c.get('centers_check', {}).get('max_rel_diff')}")
    for t in record.get("targets") or evaluate_targets(record):
        lines.append(f"target {t['id']}: {t['status']} ({t['value']}, limit {t['limit']})")
    return "\n".join(lines)

