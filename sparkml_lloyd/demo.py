"""The original Spark k-means walkthrough, reproduced with :class:`LloydKMeans`.

1,500 points from ``sklearn.datasets.make_blobs(n_samples=1500, random_state=8)``, the first
three points as initial centers, ``tol=0``: the first assignment puts 1124/57/319 points in the
three clusters, and the fit converges after 6 iterations with 500 points in every cluster.

:func:`run_demo` prints a line per iteration from the fit's iteration callback (its
:class:`~sparkml_lloyd.IterationRecord` and the updated centers) and draws the walkthrough's
figures with matplotlib's Agg backend. matplotlib and scikit-learn come with the ``demo`` extra:
``pip install "sparkml-lloyd[demo]"``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sparkml_lloyd import IterationRecord

__all__ = ["DEMO_INSTALL_HINT", "require_plotting", "run_demo"]

#: What to install when matplotlib or scikit-learn is missing.
DEMO_INSTALL_HINT = 'pip install "sparkml-lloyd[demo]"'

N_SAMPLES = 1500
RANDOM_STATE = 8
K = 3
MAX_ITER = 20
#: The walkthrough's colours: one per cluster, centers in red.
COLOURS = ("tab:blue", "tab:green", "gold")


class _Steps:
    """The fit's iteration callback: prints each iteration and keeps its record with the
    centers after its update (the figures need them)."""

    def __init__(self) -> None:
        self.steps: list[tuple[IterationRecord, np.ndarray]] = []

    def __call__(self, record: IterationRecord, centers: np.ndarray) -> None:
        self.steps.append((record, centers))
        print(record, flush=True)
        print(f"  centers after the update: {_fmt_centers(centers)}", flush=True)


def _fmt_centers(centers: np.ndarray) -> str:
    return " ".join("(" + ", ".join(f"{v:.8f}" for v in c) + ")" for c in centers)


def require_plotting() -> tuple[Any, Any, Any]:
    """``(Figure, FigureCanvasAgg, make_blobs)``, or an ImportError naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from sklearn.datasets import make_blobs
    except ImportError as e:
        raise ImportError(
            f"The demo needs matplotlib and scikit-learn ({e.name or e} is missing). "
            f"Install them with: {DEMO_INSTALL_HINT}"
        ) from e
    return Figure, FigureCanvasAgg, make_blobs


def _nearest(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    d2 = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    return d2.argmin(axis=1)


def run_demo(out_dir: str, master: str = "local[*]") -> list[str]:
    """Reproduce the walkthrough on Spark, print its numbers and write its figures.

    Uses the active SparkSession if there is one (``master`` is then ignored), else starts a
    local one on loopback and stops it at the end. Writes PNG files into ``out_dir`` (created
    if needed): the data, the initial centers, one figure per iteration (the assignment made
    with the centers before the update, those centers in red and the updated centers as black
    crosses) and the cost per iteration. Returns the paths of the files written.

    Raises ImportError (naming ``pip install "sparkml-lloyd[demo]"``) when matplotlib or
    scikit-learn is missing, and :class:`~sparkml_lloyd.session.JavaNotFoundError` when
    there is no Java.
    """
    Figure, FigureCanvasAgg, make_blobs = require_plotting()
    from pyspark.ml.linalg import Vectors
    from pyspark.sql import SparkSession

    from sparkml_lloyd import LloydKMeans
    from sparkml_lloyd.session import local_session

    X, _ = make_blobs(n_samples=N_SAMPLES, random_state=RANDOM_STATE)
    initial = X[:K].copy()
    print(
        f"The walkthrough's data: {N_SAMPLES} points from make_blobs(n_samples={N_SAMPLES}, "
        f"random_state={RANDOM_STATE}); the first {K} points are the initial centers:"
    )
    print(f"  {_fmt_centers(initial)}")

    owned = SparkSession.getActiveSession() is None
    spark = local_session(master, app_name="sparkml_lloyd-demo")
    progress = _Steps()
    try:
        print(
            f"Fitting LloydKMeans(k={K}, initialCenters=X[:{K}], tol=0.0, maxIter={MAX_ITER}) "
            f"on Spark {spark.sparkContext.master} ..."
        )
        df = spark.createDataFrame([(Vectors.dense(row),) for row in X], ["features"])
        estimator = LloydKMeans(k=K, initialCenters=initial, tol=0.0, maxIter=MAX_ITER)
        model = estimator.setIterationCallback(progress).fit(df)
    finally:
        if owned:
            spark.stop()

    summary = model.summary
    steps = progress.steps
    final = np.array(model.clusterCenters())
    how = "converged (tol=0: no center moved)" if summary.converged else "stopped at maxIter"
    print(f"{how} after {summary.numIter} iterations; training cost {summary.trainingCost:.6g}")
    print(f"final cluster sizes: {summary.clusterSizes}")
    print(f"final centers: {_fmt_centers(final)}")

    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        FigureCanvasAgg(fig)
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=80)
        written.append(path)

    def scatter(title: str) -> tuple[Any, Any]:
        fig = Figure(figsize=(6, 5))
        ax = fig.add_subplot()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x0")
        ax.set_ylabel("x1")
        return fig, ax

    fig, ax = scatter(f"The data: {N_SAMPLES} points, make_blobs(random_state={RANDOM_STATE})")
    ax.scatter(X[:, 0], X[:, 1], s=6, color="tab:blue")
    save(fig, "01-data.png")

    fig, ax = scatter(f"Initial centers: the first {K} points")
    ax.scatter(X[:, 0], X[:, 1], s=6, color="tab:blue")
    ax.scatter(initial[:, 0], initial[:, 1], s=80, color="tab:orange", edgecolors="black",
               label="initial centers")
    ax.legend(loc="lower right")
    save(fig, "02-initial-centers.png")

    before = initial
    for record, after in steps:
        labels = _nearest(X, before)
        fig, ax = scatter(
            f"Iteration {record.iteration}: assignment sizes "
            f"{'/'.join(map(str, record.clusterSizes))}, largest move {record.maxMove:.3g}"
        )
        for c in range(K):
            pts = X[labels == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=6, color=COLOURS[c % len(COLOURS)])
        ax.scatter(before[:, 0], before[:, 1], s=90, color="red", edgecolors="black",
                   label="centers used for the assignment", zorder=3)
        ax.scatter(after[:, 0], after[:, 1], s=90, marker="X", color="black",
                   label="updated centers (cluster means)", zorder=4)
        for b, a in zip(before, after, strict=True):
            if np.any(a != b):
                ax.annotate("", xy=a, xytext=b, zorder=5,
                            arrowprops={"arrowstyle": "->", "color": "black"})
        ax.legend(loc="lower right", fontsize=8)
        save(fig, f"{2 + record.iteration:02d}-iteration-{record.iteration}.png")
        before = after

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    its = [record.iteration for record, _ in steps]
    costs = [record.cost for record, _ in steps]
    ax.plot(its, costs, marker="o")
    for i, c in zip(its, costs, strict=True):
        ax.annotate(f"{c:,.0f}", (i, c), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(its)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost (sum of squared distances)")
    ax.set_title("Cost of each iteration's assignment", fontsize=10)
    save(fig, f"{3 + len(steps):02d}-cost.png")

    print(f"Wrote {len(written)} files to {out_dir}:")
    for path in written:
        print(f"  {path}")
    return written
