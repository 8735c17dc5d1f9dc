"""Arrow rows -> numpy blocks, dense or CSR, judged by the row rule (no Spark).

Every path reads feature rows in one Arrow form (made by
:func:`sparkml_lloyd._schema.feature_columns`):

* ``f``: ``list<double>``, the stored values: all ``d`` of a dense vector or an array, the
  non-zeros of a sparse vector (a null element inside an array arrives as NaN);
* ``i``: ``list<int32>``, a sparse vector's indices (empty for a dense one), and
* ``s``: ``int32``, a sparse vector's size (-1 for a dense one); these two only for vector
  columns.

:func:`read_rows` judges every row (:mod:`sparkml_lloyd._rows`) and returns the valid ones as
one block: a dense ``(rows, d)`` float64 array when at least :data:`DENSE_MIN_DENSITY` of its
entries are non-zero, else a CSR matrix (float64 values, int32 indices and row pointers). A
sparse vector is never expanded to ``d`` numbers on the way to a CSR block.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sparkml_lloyd import _rows
from sparkml_lloyd._kernel import Rows

#: A block is stored dense when at least this share of its entries is non-zero, else as CSR.
#: Dense costs 8 bytes an entry, CSR 12 a non-zero (8 + a 4-byte index) plus 4 a row; dense
#: BLAS does many times the work per second of a sparse product, so dense wins at
#: densities well under the 2/3 where the sizes meet. Text, one-hot and hashed features lie
#: far below (1e-4 to 1e-2), ordinary dense features at 1.
DENSE_MIN_DENSITY = 0.25


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _children(arr: pa.ListArray) -> tuple[np.ndarray, pa.Array]:
    """The row offsets (from 0) and the values of a list array, whatever its slice."""
    offsets = _np(arr.offsets).astype(np.int64)
    child = arr.values.slice(offsets[0], offsets[-1] - offsets[0])
    return offsets - offsets[0], child


def _combined(arr: pa.Array | pa.ChunkedArray | None) -> pa.Array | None:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def read_columns(
    columns: dict[str, pa.Array | pa.ChunkedArray], d: int | None, cosine: bool,
) -> tuple[Rows, np.ndarray, set[int]]:
    """:func:`read_rows` on the columns of :func:`sparkml_lloyd._schema.feature_columns` by
    name: ``f``, with ``i`` and ``s`` for a vector column."""
    return read_rows(columns["f"], d, cosine, columns.get("i"), columns.get("s"))


def read_rows(
    values: pa.Array | pa.ChunkedArray, d: int | None, cosine: bool,
    indices: pa.Array | pa.ChunkedArray | None = None,
    sizes: pa.Array | pa.ChunkedArray | None = None,
) -> tuple[Rows, np.ndarray, set[int]]:
    """Rows in the Arrow form above, judged by the row rule.

    ``d`` is the model's number of features; ``None`` (fit) takes it from the rows when they
    all have one length. Returns ``(x, verdict, lengths)``: the valid rows as one block in
    input order, the verdict of every input row, and the distinct lengths of the non-null rows
    (fit reports more than one as an error of the column, whatever ``handleInvalid`` says: no
    row is the "wrong" one).
    """
    values, indices, sizes = _combined(values), _combined(indices), _combined(sizes)
    n = len(values)
    nulls = _np(values.is_null())
    offsets, child = _children(values)
    lengths = np.diff(offsets)
    sparse_rows = np.zeros(n, dtype=bool)
    if sizes is not None:
        declared = _np(sizes.fill_null(-1)).astype(np.int64)
        sparse_rows = ~nulls & (declared >= 0)
        lengths = np.where(sparse_rows, declared, lengths)
    verdict = np.zeros(n, dtype=np.int8)
    verdict[nulls] = _rows.NULL
    distinct = set(np.unique(lengths[~nulls]).tolist())
    if d is None:
        d = next(iter(distinct)) if len(distinct) == 1 else None
    if d is None:  # no rows, or several lengths: nothing is read
        verdict[~nulls] = _rows.WRONG_LENGTH if distinct else _rows.VALID
        return np.empty((0, 0)), verdict, distinct
    sized = ~nulls & (lengths == d)
    verdict[~nulls & ~sized] = _rows.WRONG_LENGTH
    if not sparse_rows.any():
        return _read_dense(values, child, offsets, sized, verdict, d, cosine), verdict, distinct
    return _read_mixed(child, offsets, indices, sparse_rows, sized, verdict, d,
                       cosine), verdict, distinct


def _read_dense(values: pa.ListArray, child: pa.Array, offsets: np.ndarray,
                sized: np.ndarray, verdict: np.ndarray, d: int, cosine: bool) -> Rows:
    """Every row of the right length holds its d values: one reshape (no copy when all are)."""
    if sized.all():
        x = np.asarray(_np(child), dtype=np.float64).reshape(len(sized), d)
    else:
        rows = values.filter(pa.array(sized))
        x = np.asarray(_np(rows.flatten()), dtype=np.float64).reshape(len(rows), d)
    judged = _rows.judge(x, cosine)
    verdict[sized] = judged
    if judged.any():
        x = x[judged == _rows.VALID]
    if x.size and np.count_nonzero(x) < DENSE_MIN_DENSITY * x.size:
        return _csr(sp.csr_array(x))
    return x


def _read_mixed(child: pa.Array, offsets: np.ndarray, indices: pa.Array | None,
                sparse_rows: np.ndarray, sized: np.ndarray, verdict: np.ndarray, d: int,
                cosine: bool) -> Rows:
    """Some rows are sparse vectors: judge and place the stored entries, never a row of d."""
    n = len(sized)
    vals = np.asarray(_np(child), dtype=np.float64)
    entry_row = np.repeat(np.arange(n), np.diff(offsets))
    with np.errstate(over="ignore", invalid="ignore"):
        non_finite = np.bincount(entry_row[~np.isfinite(vals)], minlength=n) > 0
        norm_sq = np.bincount(entry_row, weights=vals * vals, minlength=n)
    verdict[sized & non_finite] = _rows.NON_FINITE
    if cosine:
        verdict[sized & ~non_finite & (norm_sq == 0.0)] = _rows.ZERO_COSINE
    valid = verdict == _rows.VALID
    col = np.arange(len(vals)) - offsets[entry_row]  # a dense row's entry: its position
    in_sparse = sparse_rows[entry_row]
    _, index_child = _children(indices)
    col[in_sparse] = _np(index_child)  # a sparse row's entries: its indices, in order
    keep = valid[entry_row] & (vals != 0.0)
    new_row = np.cumsum(valid) - 1
    m = int(valid.sum())
    rows = new_row[entry_row[keep]]
    if np.count_nonzero(keep) >= DENSE_MIN_DENSITY * m * d:
        x = np.zeros((m, d))
        x[rows, col[keep]] = vals[keep]
        return x
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=m))])
    return _csr(sp.csr_array((vals[keep], col[keep], indptr), shape=(m, d)))


def _csr(x: sp.csr_array) -> sp.csr_array:
    """Canonical CSR with 32-bit indices and row pointers (12 bytes a non-zero)."""
    x.eliminate_zeros()
    return sp.csr_array((x.data.astype(np.float64, copy=False), x.indices.astype(np.int32),
                         x.indptr.astype(np.int32)), shape=x.shape)
