"""The *Sparse features* section of the benchmark page and its targets, from a result record
alone (as :mod:`benchmarks.report`, which calls this module for records with sparse cells).

A record's sparse cells (those with ``nnz``, text-like data from :mod:`benchmarks.textgen`)
are measured as the dense ones are, so most tables are the dense page's own, rendered on a
*sparse view* of the record (:func:`view`: the same record whose cells are read as the sparse
ones). What only sparse cells have is here: the data's shape, the memory of our CSR block
files against the data's non-zero storage, and the targets of the sparse-features issue.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from benchmarks import report as R
from benchmarks import textgen
from benchmarks.grid import LABELS, SPARSE_TARGET_CELLS, Cell, format_dim

#: Timing targets of sparse cells are judged from this many rows (both target cells).
JUDGED_MIN_N = 100_000
#: Our block files may take at most this many times the data's non-zero storage.
BLOCK_LIMIT = 1.3
#: Target ids of this section start with this (the page's first table leaves them out).
PREFIX = "sparse_"
#: The sparse cells' plot, beside the page, when the page also has dense cells (else the
#: page's own plot shows the sparse cells).
IMAGE = "images/benchmarks_sparse.png"


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its sparse cells in the place of its dense ones (see
    :func:`benchmarks.report._cells`)."""
    return {**record, R.VIEW_KEY: "sparse"}


def sparse_cells(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The sparse cells that ran."""
    return R._cells(view(record))


def _prefixed(t: R.Target, description: str) -> R.Target:
    return R.prefixed(t, PREFIX, description)


def evaluate_targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The sparse-features targets, or none for a record without sparse cells."""
    if not any(c.get("nnz") for c in record.get("cells", [])):
        return []
    v = view(record)
    targets = []
    for cell in SPARSE_TARGET_CELLS:
        t = R._ratio_target(v, (cell.n, cell.d, cell.k), 0.5)
        targets.append(_prefixed(t, "sparse: per iteration, ours / best built-in at "
                                    f"{_name(cell)}"))
    centers, early = R._correctness(v)
    targets += [
        _prefixed(R._worst_target(v, "default_fit", "", 0.7,
                                  lambda c: c.get("default_fit", {}).get("ratio"),
                                  JUDGED_MIN_N),
                  "sparse: whole default fit, ours / built-in ml KMeans"),
        _prefixed(R._worst_target(v, "block_memory", "", BLOCK_LIMIT,
                                  lambda c: c.get("memory", {}).get("block_ratio"), 0),
                  "sparse: our block files / non-zero storage (12 nnz + 4 (n + 1) bytes)"),
        _prefixed(R._worst_target(v, "transform", "", 1.0,
                                  lambda c: c.get("transform", {}).get("ratio"),
                                  JUDGED_MIN_N),
                  "sparse: transform, ours / Spark's KMeansModel with the same centers"),
        _prefixed(centers, "sparse: centers of ours = MLlib / scikit-learn (same C0)"),
        _prefixed(early, "sparse: no competitor converged before m2 iterations"),
    ]
    return [asdict(t) for t in targets]


def _name(cell: Cell) -> str:
    return f"({R._fmt_n(cell.n)}, {format_dim(cell.d)}, {cell.k}, ~{cell.nnz} nnz)"


def _data_table(cells: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in cells:
        data = c.get("data", {})
        rows.append([
            R._cell_name(c), R._fmt_n(c["n"]), format_dim(c["d"]), str(c["k"]),
            f"{data['nnz_per_row']:.1f}" if "nnz_per_row" in data else "-",
            f"{data['density']:.2e}" if "density" in data else "-",
            R._fmt_bytes(data.get("nonzero_bytes")), R._fmt_bytes(c["n"] * c["d"] * 8),
            R._fmt_bytes(data.get("input_cache_bytes")),
        ])
    return R._table(["cell", "n (documents)", "d (features)", "k", "non-zeros a row",
                     "density", "non-zero storage", "as dense n*d*8", "input cache"], rows)


def _memory_table(cells: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in cells:
        m = c.get("memory", {})
        cache = m.get("cache_by_competitor", {})

        def held(name: str, cache: dict[str, Any] = cache) -> str:
            v = cache.get(name)
            if not v:
                return "-"
            return R._fmt_bytes((v.get("prepared_bytes") or 0)
                                + (v.get("during_fit_bytes") or 0))

        peaks = m.get("peaks", {})
        top = {key: max((p.get(key, 0) for p in peaks.values()), default=0)
               for key in ("driver_jvm_rss", "driver_python_rss", "workers_pss")}
        rows.append([
            R._cell_name(c), R._fmt_bytes(m.get("nonzero_bytes")),
            R._fmt_bytes(m.get("block_file_bytes")), R._fmt_x(m.get("block_ratio")),
            held("mllib"), held("ml_block"), R._fmt_bytes(top["driver_jvm_rss"]),
            R._fmt_bytes(top["driver_python_rss"]),
            R._fmt_bytes(peaks.get("ours", {}).get("workers_pss")),
            R._fmt_bytes(top["workers_pss"]),
        ])
    return R._table(["cell", "non-zero storage", "our block files", "blocks / non-zero",
                     "mllib cache", "ml block cache", "peak JVM RSS", "peak Python driver",
                     "peak workers (ours)", "peak workers (any)"], rows)


def _blas(record: dict[str, Any]) -> str:
    blas = record.get("environment", {}).get("jvm_blas")
    if not blas:
        return "Spark's JVM BLAS: not recorded by this run."
    native = (f"native `{blas['native']}`" if blas.get("native")
              else "no native BLAS loaded")
    return (f"Spark's JVM BLAS: `{blas.get('used')}` ({native}; Java `{blas.get('java')}`). "
            "Spark's products of sparse operands (`BLAS.dot` of a sparse row and a center, "
            "`gemm` of a sparse block) are its own loops; the BLAS serves its dense ones.")


def section(record: dict[str, Any], targets: list[dict[str, Any]]) -> list[str]:
    """The *Sparse features* section, or nothing for a record without sparse cells."""
    cells = sparse_cells(record)
    if not cells:
        return []
    v = view(record)
    present = [n for n in R.COMPETITORS if any(n in c.get("competitors", {}) for c in cells)]
    lines = [
        "## Sparse features",
        "",
        "The same measurements on sparse data, in the same run, on the same cached "
        "DataFrame for every competitor: a `features` column of `SparseVector`s, "
        + textgen.describe() + " (`benchmarks/textgen.py`; the cells below). Ours keeps "
        "such rows sparse: a partition becomes a CSR block in `/dev/shm`, the kernel works on "
        "it directly and only the `k x d` centers are dense. Competitors: "
        + ", ".join(LABELS[n] for n in present)
        + " (MLlib from the same initial centers, given as the sparse documents they are; "
        "scikit-learn on the collected CSR matrix; Spark's block solver keeps sparse blocks "
        "sparse, as its `InstanceBlock` stores the smaller of the dense and sparse forms). "
        f"Timing targets are judged on sparse cells with n >= {R._fmt_n(JUDGED_MIN_N)}. "
        + _blas(record),
        "",
        *_data_table(cells),
        "",
        *([f"![per-iteration seconds per sparse cell]({IMAGE})", ""] if R._cells(record)
          else []),
        "### Sparse targets",
        "",
        *R._table(["target", "limit", "measured", "verdict", "detail"], [
            [t["description"], t["limit"], t["value"], R._status_icon(t["status"]),
             t["detail"]] for t in targets if t["id"].startswith(PREFIX)]),
        "",
        "### Memory of sparse blocks",
        "",
        "*Our block files*: the peak bytes of our block files (`sparkml_lloyd-*` in "
        "`/dev/shm` or the temp dir) while the probed fit ran (polled every 50 ms, and at "
        "its first iteration), against the data's non-zero storage as CSR, `12 * nnz + "
        "4 * (n + 1)` bytes (8-byte values, 4-byte indices and row pointers). Caches and "
        "peaks as in the dense memory table.",
        "",
        *_memory_table(cells),
        "",
    ]
    body = (R._per_iteration_section(v, present) + R._time_split_section(v)
            + R._correctness_section(v, present) + R._fit_transform_section(v))
    return [*lines, *R.demote(body)]
