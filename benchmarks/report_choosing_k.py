"""The *Choosing k* section of the benchmark page, from the newest real run of
``python -m benchmarks.choosing_k`` (``benchmarks/results/choosing-k-*.json``), and its plot
(``docs/images/benchmarks_choosing_k.png``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE = "images/benchmarks_choosing_k.png"
#: The issue's limits: fitMultiple's sweep against Spark's KMeans per k and against our fits
#: one after another; our CrossValidator against Spark's.
SWEEP_VS_SPARK, SWEEP_VS_ONE_BY_ONE, CV_VS_SPARK = 0.25, 0.6, 0.3


def real_runs(results: Path = RESULTS) -> list[tuple[Path, dict[str, Any]]]:
    """Every real (not smoke) choosing-k record with its path, newest first."""
    found = []
    for path in sorted(results.glob("choosing-k-*.json"), reverse=True):
        record = json.loads(path.read_text())
        if not record.get("smoke"):
            found.append((path, record))
    return found


def newest(results: Path = RESULTS) -> tuple[Path, dict[str, Any]] | None:
    """The newest real (not smoke) choosing-k record, with its path."""
    runs = real_runs(results)
    return runs[0] if runs else None


def _earlier(results: Path, shown: Path) -> list[str]:
    """A line per older real run: its commit and ratios (how much they move between runs)."""
    lines = []
    for path, record in real_runs(results):
        if path == shown:
            continue
        s, c = record["sweep"], record["cross_validator"]
        commit = record["environment"].get("git", {}).get("commit") or "?"
        lines.append(f"- `{path.name}` (commit `{commit[:12]}`): sweep {s['ratio_vs_spark']:.2f}x "
                     f"Spark, {s['ratio_vs_one_by_one']:.2f}x one by one; CrossValidator "
                     f"{c['ratio']:.2f}x ({c['ours_seconds']:.1f} s / "
                     f"{c['spark_kmeans_seconds']:.1f} s)")
    if not lines:
        return []
    return ["Earlier real runs of the same benchmark, on older code (the tables above are "
            "the newest run's):", "", *lines, ""]


def _verdict(value: float, limit: float) -> str:
    return "✅ pass" if value <= limit else "❌ miss"


def section(found: tuple[Path, dict[str, Any]] | None) -> list[str]:
    """The section's lines (none without a real run)."""
    if found is None:
        return []
    path, record = found
    s, c, spec = record["sweep"], record["cross_validator"], record["spec"]
    env = record["environment"]
    equal = s["centers_vs_single_fits"] <= 1e-12 and s["same_iterations"]
    commit = env.get("git", {}).get("commit") or "?"
    n, d = spec["n"], spec["d"]
    ks = f"{s['ks'][0]}..{s['ks'][-1]}"
    return [
        "## Choosing k",
        "",
        f"`python -m benchmarks.choosing_k` at commit `{commit[:12]}` "
        f"({env['machine']['cpu_model']}, {env['machine']['nproc']} cores, pyspark "
        f"{env['versions']['pyspark']}, JVM BLAS {env.get('jvm_blas', {}).get('used')}; "
        f"results: `benchmarks/results/{path.name}`): one cached dataset of {n:,} rows x {d} "
        f"features ({spec['groups']} overlapping Gaussian blobs), every fit with "
        f"`maxIter={spec['max_iter']}` and `tol=0`, so every model runs {spec['max_iter']} "
        "iterations on every side (the same work per k); one run each, as the whole run "
        "takes minutes. See [choosing k](choosing-k.md).",
        "",
        "| target | limit | measured | verdict |",
        "| --- | --- | --- | --- |",
        f"| sweep k={ks}: `fitMultiple` / Spark's `KMeans` fitted per k | "
        f"{SWEEP_VS_SPARK}x | {s['ratio_vs_spark']:.2f}x | "
        f"{_verdict(s['ratio_vs_spark'], SWEEP_VS_SPARK)} |",
        f"| sweep k={ks}: `fitMultiple` / our fits one after another | "
        f"{SWEEP_VS_ONE_BY_ONE}x | {s['ratio_vs_one_by_one']:.2f}x | "
        f"{_verdict(s['ratio_vs_one_by_one'], SWEEP_VS_ONE_BY_ONE)} |",
        f"| `CrossValidator`, {c['folds']} folds x {len(c['ks'])} maps (k = "
        f"{', '.join(map(str, c['ks']))}): ours / Spark's `KMeans` | {CV_VS_SPARK}x | "
        f"{c['ratio']:.2f}x | {_verdict(c['ratio'], CV_VS_SPARK)} |",
        f"| models of `fitMultiple` equal to single fits | 1e-12 | "
        f"{s['centers_vs_single_fits']:.1e}, same iterations: {s['same_iterations']} | "
        f"{'✅ pass' if equal else '❌ miss'} |",
        "",
        f"![seconds of the sweep and the CrossValidator]({IMAGE})",
        "",
        "| | Spark `KMeans` | ours, one by one | ours, `fitMultiple` |",
        "| --- | --- | --- | --- |",
        f"| sweep k={ks} ({len(s['ks'])} models) | {s['spark_kmeans_seconds']:.1f} s | "
        f"{s['ours_one_by_one_seconds']:.1f} s | {s['ours_fit_multiple_seconds']:.1f} s |",
        f"| `CrossValidator` ({c['folds']} x {len(c['ks'])} fits, "
        f"{c['folds'] * len(c['ks'])} evaluations) | {c['spark_kmeans_seconds']:.1f} s | | "
        f"{c['ours_seconds']:.1f} s |",
        "",
        f"Best k of the CrossValidator (`ClusteringEvaluator`, silhouette): Spark's "
        f"{c['spark_kmeans_best_k']}, ours {c['ours_best_k']}. The CrossValidator's "
        "time includes what both sides pay alike: the folds' split and cache, and "
        f"{c['folds'] * len(c['ks'])} silhouette evaluations (Spark's `ClusteringEvaluator` on "
        "each model's `transform` of its validation fold, about 0.7-1 s each here); ours "
        "spends the rest in one `fitMultiple` per fold.",
        "",
        *_earlier(path.parent, path),
    ]


def render_plot(found: tuple[Path, dict[str, Any]] | None, path: Path) -> Path | None:
    """Bars of the seconds: the sweep three ways, the CrossValidator two ways."""
    if found is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, record = found
    s, c = record["sweep"], record["cross_validator"]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    bars = [("sweep: Spark KMeans per k", s["spark_kmeans_seconds"], "tab:gray"),
            ("sweep: ours one by one", s["ours_one_by_one_seconds"], "tab:cyan"),
            ("sweep: ours fitMultiple", s["ours_fit_multiple_seconds"], "tab:blue"),
            ("CrossValidator: Spark KMeans", c["spark_kmeans_seconds"], "tab:gray"),
            ("CrossValidator: ours", c["ours_seconds"], "tab:blue")]
    y = range(len(bars))
    ax.barh(list(y), [b[1] for b in bars], color=[b[2] for b in bars])
    ax.set_yticks(list(y), [b[0] for b in bars])
    ax.invert_yaxis()
    for i, b in enumerate(bars):
        ax.text(b[1], i, f" {b[1]:.0f} s", va="center", fontsize=8)
    ax.set_xlabel("seconds (wall)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
