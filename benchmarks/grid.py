"""What a benchmark run measures: the cells of the (n, d, k) grid and the run's settings.

Everything configurable lives here, in one place: the named grids, their defaults (repeats,
iteration counts, driver memory), and the rules that skip a cell or a competitor in a cell.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: Competitor names, in report order. ``ours`` first; the three Spark built-ins; then the
#: single-machine reference and the walkthrough's per-row floor.
COMPETITORS: tuple[str, ...] = ("ours", "mllib", "ml_row", "ml_block", "sklearn", "per_row")
#: The Spark built-ins: "best built-in" is the fastest of these in a cell.
BUILTINS: tuple[str, ...] = ("mllib", "ml_row", "ml_block")
#: What runs on a Spark Connect server (``--backend connect``): ours and the ml built-ins (the
#: RDD API of ``mllib``, a driver-side array and the walkthrough's RDDs do not exist there).
CONNECT_COMPETITORS: tuple[str, ...] = ("ours", "ml_row", "ml_block")
#: Which backends a run measures (``--backend``): the classic session (py4j), a Spark Connect
#: server with the client in its own process, or both, one after the other.
BACKENDS: tuple[str, ...] = ("classic", "connect", "both")
#: Human-readable names for tables and plots.
LABELS: dict[str, str] = {
    "ours": "ours (LloydKMeans)",
    "mllib": "mllib KMeans.train",
    "ml_row": "ml KMeans row",
    "ml_block": "ml KMeans block",
    "sklearn": "scikit-learn",
    "per_row": "walkthrough per-row",
}

#: scikit-learn runs only where the collected array (dense) or CSR matrix (sparse: this many
#: stored values) fits comfortably on the driver.
SKLEARN_MAX_ND = 100_000_000
#: The walkthrough's per-row code runs only at d = 2 (its distance is written for 2-D points)
#: and up to this many rows: it is the floor, not a contender.
PER_ROW_MAX_N = 100_000
#: ... and up to this many clusters: it makes one filter pass over the data per cluster, so a
#: fit costs ~70 s per iteration at (1e5, 2, 20) here and would take ~6 min at k = 100.
PER_ROW_MAX_K = 20
#: Cells with more than this many doubles are skipped: 4e6 x 100 is 3.2 GB raw, held about four
#: times at once (DataFrame cache, MLlib's cached RDD, the competitor's own cache, worker copies),
#: which does not fit a 12g driver heap on a 24 GiB machine next to the Python workers.
MAX_ND = 100_000_000


@dataclass(frozen=True, order=True)
class Cell:
    """One point of the grid: ``n`` rows, ``d`` features, ``k`` clusters; a *sparse* cell also
    has ``nnz``, the non-zeros a row (text-like data, :mod:`benchmarks.textgen`), a dense cell
    has ``None`` (Gaussian blobs, :mod:`benchmarks.datagen`)."""

    n: int
    d: int
    k: int
    nnz: int | None = field(default=None, compare=False)

    @property
    def sparse(self) -> bool:
        return self.nnz is not None

    @property
    def raw_bytes(self) -> int:
        """Size of the data as a dense float64 matrix, ``n * d * 8``."""
        return self.n * self.d * 8

    @property
    def stored_values(self) -> int:
        """Numbers the data stores: ``n * d`` dense, about ``n * nnz`` sparse."""
        return self.n * (self.d if self.nnz is None else self.nnz)

    @property
    def work(self) -> int:
        """Multiply-adds of one assignment pass: ``n * d * k`` dense, ``n * nnz * k`` sparse."""
        return self.stored_values * self.k

    @property
    def key(self) -> str:
        """A compact, sortable-by-eye name: ``"1e6,20,20"``; sparse ``"1e5,2^18,20,30"``."""
        if self.nnz is None:
            return f"{format_count(self.n)},{self.d},{self.k}"
        return f"{format_count(self.n)},{format_dim(self.d)},{self.k},{self.nnz}"


def format_dim(d: int) -> str:
    """A power of two from 1024 up as ``"2^18"``, any other ``d`` as is."""
    if d >= 1024 and d & (d - 1) == 0:
        return f"2^{d.bit_length() - 1}"
    return str(d)


def format_count(n: int) -> str:
    """``1000000 -> "1e6"``, ``4000000 -> "4e6"``, ``20000 -> "2e4"``, ``150 -> "150"``."""
    if n >= 1000:
        exp = len(str(n)) - 1
        mant = n / 10**exp
        if mant == int(mant):
            return f"{int(mant)}e{exp}"
    return str(n)


#: A transform is timed this many times per round. A call at n = 1e5-1e6 takes 0.1-0.7 s and
#: calls scatter by +-0.15 s; with both models running the same JVM plan, the ratio of two
#: medians of 9 calls still moved by +-5% (run 20261127T161015Z: 1.03x at (1e6, 20, 20) with
#: ranges 0.44-0.72 s ours and 0.51-0.70 s built-in), so 21 calls per model.
TRANSFORM_CALLS_PER_ROUND = 7


@dataclass(frozen=True)
class GridSpec:
    """Defaults of a named grid."""

    cells: tuple[Cell, ...]
    repeats: int
    m1: int
    m2: int
    driver_memory: str
    smoke: bool
    #: maxIter pair of the (slow) per-row walkthrough.
    per_row_iters: tuple[int, int] = (1, 2)
    #: One untimed fit per competitor before the timed rounds (it also probes cache sizes).
    warmup: bool = True
    #: Timed transform calls per model and round.
    transform_calls: int = TRANSFORM_CALLS_PER_ROUND
    #: Sparse cells (text-like data), run after the dense ones unless ``--features`` says
    #: otherwise.
    sparse_cells: tuple[Cell, ...] = ()
    #: Cells measured on a Spark Connect server (``--backend connect`` or ``both``), and the
    #: competitors that run there (those of ``--competitors`` among them).
    connect_cells: tuple[Cell, ...] = ()
    connect_competitors: tuple[str, ...] = CONNECT_COMPETITORS


def _cells(*triples: tuple[float, int, int]) -> tuple[Cell, ...]:
    return tuple(Cell(int(n), d, k) for n, d, k in triples)


#: The sparse cells the targets name: documents of ~30 hashed words, 2^18 features.
SPARSE_TARGET_CELLS: tuple[Cell, ...] = (Cell(10**5, 2**18, 20, 30), Cell(10**6, 2**18, 100, 30))
#: The cells the Spark Connect targets name.
CONNECT_TARGET_CELLS: tuple[Cell, ...] = _cells((1e6, 20, 20), (1e6, 100, 100))
#: Which cells of a grid a run takes (``--features``).
FEATURES: tuple[str, ...] = ("both", "dense", "sparse")


GRIDS: dict[str, GridSpec] = {
    # CI: one tiny cell with every competitor, one round, 1 vs 3 iterations (per-row: 0 vs 1),
    # every step once: no warm-up fits (the first timed fit is probed), one transform call.
    "smoke": GridSpec(
        cells=_cells((2e4, 2, 3)),
        repeats=1, m1=1, m2=3, driver_memory="2g", smoke=True, per_row_iters=(0, 1),
        warmup=False, transform_calls=1, sparse_cells=(Cell(10**4, 2**14, 4, 20),),
        connect_cells=_cells((2e4, 2, 3)), connect_competitors=("ours", "ml_row"),
    ),
    # The cells the performance targets name.
    "default": GridSpec(
        cells=_cells((1e5, 2, 3), (1e6, 2, 3), (1e6, 20, 20), (1e6, 100, 100), (4e6, 20, 20)),
        repeats=3, m1=2, m2=6, driver_memory="12g", smoke=False,
        sparse_cells=SPARSE_TARGET_CELLS, connect_cells=CONNECT_TARGET_CELLS,
    ),
    # The whole n x d x k grid; infeasible cells are skipped with a reason (see skip_reason).
    "full": GridSpec(
        cells=_cells(*itertools.product((1e5, 1e6, 4e6), (2, 20, 100), (3, 20, 100))),
        repeats=3, m1=2, m2=6, driver_memory="12g", smoke=False,
        sparse_cells=SPARSE_TARGET_CELLS, connect_cells=CONNECT_TARGET_CELLS,
    ),
}


#: Where an iteration is cheap, start-up noise (about +-0.5 s per fit here) would swamp
#: T(m2) - T(m1) over a few iterations; those cells run more: (n*d*k up to, m2 - m1 at least;
#: sparse cells count n*nnz*k, see :attr:`Cell.work`).
LONGER_RUNS: tuple[tuple[float, int], ...] = ((1e7, 50), (1e9, 10))


def iterations_for(cell: Cell, m1: int, m2: int, longer: bool) -> tuple[int, int]:
    """The (m1, m2) pair of a cell: ``m2`` raised per :data:`LONGER_RUNS` when ``longer``."""
    if longer:
        for limit, gap in LONGER_RUNS:
            if cell.work <= limit:
                return m1, max(m2, m1 + gap)
    return m1, m2


def grid_cells(spec: GridSpec, features: str) -> list[Cell]:
    """The cells of a grid that ``--features`` selects: ``dense``, ``sparse`` or ``both``
    (dense first)."""
    if features not in FEATURES:
        raise ValueError(f"--features must be one of {', '.join(FEATURES)}")
    return ([*spec.cells] if features != "sparse" else []) + (
        [*spec.sparse_cells] if features != "dense" else [])


@dataclass
class Settings:
    """Everything that shapes one run (stored verbatim in the result JSON)."""

    grid: str
    cells: list[Cell]
    repeats: int
    m1: int
    m2: int
    per_row_m1: int
    per_row_m2: int
    warmup: bool
    master: str
    partitions: int
    driver_memory: str
    seed: int
    competitors: list[str]
    smoke: bool
    max_nd: int = MAX_ND
    #: raise m2 in cheap cells (see LONGER_RUNS); off for smoke runs and an explicit --m2
    longer_runs: bool = False
    #: timed transform calls per model and round (see TRANSFORM_CALLS_PER_ROUND)
    transform_calls: int = TRANSFORM_CALLS_PER_ROUND
    spark_conf: dict[str, str] = field(default_factory=dict)
    #: which of the grid's cells ran (see :func:`grid_cells`; ``--cells`` overrides)
    features: str = "both"
    #: which backends ran (one of :data:`BACKENDS`)
    backend: str = "classic"
    #: the cells measured on a Spark Connect server (none when ``backend == "classic"``) and
    #: the competitors measured there
    connect_cells: list[Cell] = field(default_factory=list)
    connect_competitors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cells"] = [c.key for c in self.cells]
        out["connect_cells"] = [c.key for c in self.connect_cells]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        """The settings :meth:`to_json` wrote (the Connect client reads them so)."""
        out = cls(**{**data, "cells": [], "connect_cells": []})
        for name in ("cells", "connect_cells"):
            if data[name]:
                setattr(out, name, parse_cells(";".join(data[name])))
        return out


def skip_reason(cell: Cell, max_nd: int = MAX_ND) -> str | None:
    """Why a cell is not run, or ``None`` when it is run."""
    if cell.sparse:
        if cell.stored_values > max_nd:
            return (f"n*nnz = {cell.stored_values:.0e} > {max_nd:.0e} stored values: held "
                    "several times at once, as dense cells are")
        return None
    if cell.n * cell.d > max_nd:
        return (
            f"n*d = {cell.n * cell.d:.0e} > {max_nd:.0e}: {cell.raw_bytes / 1e9:.1f} GB raw, "
            "held ~4 times at once (DataFrame cache, MLlib's RDD cache, the competitor's own "
            "cache, worker copies): does not fit a 12g driver heap on 24 GiB"
        )
    return None


def competitor_skip_reason(name: str, cell: Cell) -> str | None:
    """Why a competitor does not run in a cell, or ``None`` when it runs."""
    if name == "sklearn" and cell.stored_values > SKLEARN_MAX_ND:
        what = "n*nnz" if cell.sparse else "n*d"
        return f"{what} > {SKLEARN_MAX_ND:.0e}: the collected array would not fit comfortably"
    if name == "per_row" and cell.sparse:
        return "the per-row walkthrough is written for dense 2-D points"
    if name == "per_row" and (cell.d != 2 or cell.n > PER_ROW_MAX_N or cell.k > PER_ROW_MAX_K):
        return (f"the per-row floor runs only at d = 2, n <= {format_count(PER_ROW_MAX_N)} and "
                f"k <= {PER_ROW_MAX_K} (one filter pass per cluster)")
    return None


def _number(text: str) -> int:
    """``"1e6"``, ``"1000000"`` or ``"2^18"`` -> int."""
    base, caret, exp = text.partition("^")
    return int(base) ** int(exp) if caret else int(float(text))


def parse_cells(text: str) -> list[Cell]:
    """``"1e6,20,20;4e6,20,20"`` -> dense cells; ``"1e5,2^18,20,30"`` (n, d, k, nnz a row) -> a
    sparse cell. Numbers may be written as ``1e6``, ``1000000`` or ``2^18``."""
    cells = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        fields = [f.strip() for f in part.split(",")]
        if len(fields) not in (3, 4):
            raise ValueError(f"cell {part!r} is not 'n,d,k' (dense) or 'n,d,k,nnz' (sparse)")
        try:
            n, d, k, *nnz = (_number(f) for f in fields)
        except ValueError:
            raise ValueError(f"cell {part!r}: n, d, k and nnz must be numbers") from None
        if n < 2 or d < 1 or k < 2 or k > n:
            raise ValueError(f"cell {part!r}: need n >= k >= 2 and d >= 1")
        if nnz and not 1 <= nnz[0] <= d // 4:
            raise ValueError(f"cell {part!r}: need 1 <= nnz <= d/4 (sparse rows)")
        cells.append(Cell(n, d, k, nnz[0] if nnz else None))
    if not cells:
        raise ValueError("--cells is empty")
    return cells


def cores_of(master: str) -> int:
    """Number of cores of a ``local[N]`` / ``local[N,F]`` / ``local[*]`` master, else nproc."""
    m = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master.strip())
    if m and m.group(1) != "*":
        return int(m.group(1))
    if master.strip() == "local":
        return 1
    return os.cpu_count() or 1
