"""The numeric kernel of Lloyd's algorithm: plain numpy, no Spark.

Every function takes read-only arrays and returns new ones, so the same code runs on the
driver, in a Python worker over one partition's block, and in the unit tests.

One Lloyd iteration maps onto Spark as

* :func:`block_stats` on every block (``mapPartitions``): nearest center, weighted partial sums,
  weights and cost of that block;
* :func:`merge_stats` of the small ``k x d`` partials (driver, in partition order, so the result
  is deterministic for a given partitioning);
* :func:`update_centers` on the driver: new centers, the rule for empty clusters, and the move of
  every center, which decides convergence.

Distances. For the argmin only ``||c||^2 - 2 x.c`` is needed; ``||x||^2`` is added for the cost.
With the cosine measure the blocks hold unit-normalised points and the centers are unit vectors,
so the same argmin picks the largest cosine similarity and the cost is ``1 - x.c``.

Blocks. A block is a dense ``(rows, d)`` float64 array or a CSR matrix
(``scipy.sparse.csr_array``: float64 values, int32 column indices) for sparse data; every
function here takes either. With a CSR block ``x.c`` is a sparse-dense product (work in
proportion to the non-zeros), the partial sums are a sparse ``k x d`` matrix, and only the
centers (and the merged sums on the driver) are dense ``k x d``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

EUCLIDEAN = "euclidean"
COSINE = "cosine"

#: Rows per chunk for the ``n x k`` score matrix: bounds memory at ``CHUNK_ROWS * k`` doubles.
CHUNK_ROWS = 16384
#: Up to this many clusters the nearest center is a running minimum over the centers' rows
#: of scores; above it ``argmin``.
RUNNING_MIN_MAX_K = 128


#: A block or a set of centers: dense rows, or a CSR matrix of rows.
Rows = Any


class BlockStats(NamedTuple):
    """Partial statistics of one block (or, after :func:`merge_stats`, of the whole data)."""

    sums: Rows  # (k, d) weighted sums of the points of each center (CSR for a CSR block)
    weights: np.ndarray  # (k,) total weight assigned to each center
    counts: np.ndarray  # (k,) number of points assigned to each center (int64)
    cost: float  # sum of weight * distance to the nearest center


def row_of_entry(x: sp.csr_array) -> np.ndarray:
    """The row of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))


def row_norms_sq(x: Rows) -> np.ndarray:
    """Squared Euclidean norm of every row."""
    if sp.issparse(x):
        return np.bincount(row_of_entry(x), weights=x.data * x.data, minlength=x.shape[0])
    return np.einsum("ij,ij->i", x, x)


def normalize_rows(x: Rows) -> Rows:
    """Rows scaled to unit Euclidean norm (the cosine measure's view of the data).

    Rows of norm zero are returned unchanged; callers reject them before this point.
    """
    norms = np.sqrt(row_norms_sq(x))
    norms[norms == 0.0] = 1.0
    if sp.issparse(x):
        return sp.csr_array((x.data / np.repeat(norms, np.diff(x.indptr)), x.indices, x.indptr),
                            shape=x.shape)
    return x / norms[:, None]


def unit_centers(centers: np.ndarray, distance: str) -> np.ndarray:
    """The centers as :func:`nearest` needs them: contiguous float64, unit rows for cosine.

    Fitted cosine centers are unit vectors already; a model built by hand from other centers
    then assigns by the true cosine, as Spark does."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    return normalize_rows(centers) if distance == COSINE else centers


class Prepared:
    """Centers with what every block of a pass needs from them, computed once a pass:
    squared norms, ``-2 c`` and (for CSR blocks) its transpose as a C-contiguous ``d x k``
    array, which a sparse-dense product needs (scipy would otherwise copy it per chunk)."""

    __slots__ = ("_minus_2c_t", "centers", "minus_2c", "sq")

    def __init__(self, centers: Rows, sq: np.ndarray | None = None) -> None:
        self.centers = centers
        self.sq = row_norms_sq(centers) if sq is None else sq
        self.minus_2c = -2.0 * centers  # a power of two: exact, same bits as -2 (x.c)
        self._minus_2c_t: Any = None

    @property
    def minus_2c_t(self) -> Any:
        if self._minus_2c_t is None:
            t = self.minus_2c.T
            self._minus_2c_t = t if sp.issparse(t) else np.ascontiguousarray(t)
        return self._minus_2c_t


def prepare(centers: Rows | Prepared) -> Prepared:
    """The centers of a pass, prepared once (see :class:`Prepared`)."""
    return centers if isinstance(centers, Prepared) else Prepared(centers)


def nearest(
    x: Rows,
    centers: Rows | Prepared,
    distance: str = EUCLIDEAN,
    centers_sq: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest center for every row of ``x``, and the distance to it.

    The distance is the squared Euclidean distance, or ``1 - cos`` for ``distance="cosine"``
    (then ``x`` and ``centers`` must already be unit rows). Ties go to the lowest index, as in
    Spark and scikit-learn. Works in chunks of :data:`CHUNK_ROWS` rows; the scores of a chunk
    are a ``k x rows`` matrix, so each center's scores are contiguous and the minimum is a
    running elementwise minimum over the centers (faster than ``argmin`` along short rows).
    """
    labels, dist = _nearest(x, centers, distance, centers_sq, with_distances=True)
    assert dist is not None
    return labels, dist


def nearest_labels(x: Rows, centers: Rows | Prepared, distance: str = EUCLIDEAN) -> np.ndarray:
    """The labels of :func:`nearest` alone: what a transform needs (a Euclidean distance
    costs a pass over ``x`` for the rows' norms)."""
    return _nearest(x, centers, distance, None, with_distances=False)[0]


def _nearest(x: Rows, centers: Rows | Prepared, distance: str, centers_sq: np.ndarray | None,
             with_distances: bool) -> tuple[np.ndarray, np.ndarray | None]:
    p = centers if isinstance(centers, Prepared) else Prepared(centers, centers_sq)
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float64) if with_distances else None
    scores = _scores_buffer(x, p)
    for start in range(0, n, CHUNK_ROWS):
        xc = x[start : start + CHUNK_ROWS]
        lab, best = _nearest_chunk(xc, p, scores)
        labels[start : start + xc.shape[0]] = lab
        if dist is not None:
            dist[start : start + xc.shape[0]] = _distances(xc, p, distance, lab, best)
    return labels, dist


def _scores_buffer(x: Rows, p: Prepared) -> np.ndarray | None:
    """The ``k x CHUNK_ROWS`` scores of a dense block's full chunks, allocated once a block
    (a fresh array a chunk costs page faults; with the sums' CSC product, an iteration at
    (1e6, 20, 20) went from 86 to 62 ms)."""
    if sp.issparse(x) or x.shape[0] < CHUNK_ROWS:
        return None
    return np.empty((p.centers.shape[0], CHUNK_ROWS))


def _nearest_chunk(xc: Rows, p: Prepared,
                   scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The label and best score (``|c|^2 - 2 x.c``) of every row of one chunk of at most
    :data:`CHUNK_ROWS` rows; a full dense chunk's scores go into ``scores``."""
    if sp.issparse(xc):  # (rows, k) from the sparse product; argmin along the rows
        score = _dense(xc @ p.minus_2c_t)
        score += p.sq
        lab = np.argmin(score, axis=1).astype(np.int32)  # the first of equal minima
        return lab, score[np.arange(xc.shape[0]), lab]
    # (k, rows): each center's scores contiguous
    full = scores is not None and scores.shape[1] == xc.shape[0]
    score = np.matmul(p.minus_2c, xc.T, out=scores) if full else p.minus_2c @ xc.T
    score += p.sq[:, None]
    return _nearest_scores(score, p.centers.shape[0])


def _distances(xc: Rows, p: Prepared, distance: str, lab: np.ndarray,
               best: np.ndarray) -> np.ndarray:
    """The distance of each row of a chunk to its nearest center, from its best score."""
    if distance == COSINE:
        # best = |c|^2 - 2 x.c with |c| = 1, so x.c = (|c|^2 - best) / 2.
        d = 1.0 - (p.sq[lab] - best) * 0.5
    else:
        d = row_norms_sq(xc) + best
    np.maximum(d, 0.0, out=d)
    return d


def _dense(a: Any) -> np.ndarray:
    return a.toarray() if sp.issparse(a) else np.asarray(a)


def _nearest_scores(score: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Label and score of the smallest of the ``(k, rows)`` scores of every row: a running
    elementwise minimum over the centers' contiguous rows of scores (faster than ``argmin``
    along short rows) up to :data:`RUNNING_MIN_MAX_K` centers, ``argmin`` above."""
    score = _dense(score)
    if k <= RUNNING_MIN_MAX_K:
        best = score[0].copy()
        lab = np.zeros(score.shape[1], dtype=np.int32)
        for j in range(1, k):
            closer = score[j] < best  # strict: a tie keeps the lower index
            np.minimum(best, score[j], out=best)
            lab[closer] = j
        return lab, best
    lab = np.argmin(score, axis=0).astype(np.int32)
    return lab, score[lab, np.arange(score.shape[1])]


def _add_chunk_sums(
    sums: np.ndarray, xc: np.ndarray, lab: np.ndarray, w: np.ndarray | None
) -> None:
    """``sums[j] += sum of w * row`` over the rows of the chunk ``xc`` labelled ``j``.

    The product of the chunk's ``k x rows`` one-hot matrix with the chunk, the one-hot
    matrix stored as CSC (one entry a column, so no sort builds it): scipy adds ``w * row``
    to its cluster's sums row by row, in order, in ``rows x d`` operations whatever ``k`` (a
    dense one-hot product costs ``rows x k x d``).
    """
    rows = xc.shape[0]
    onehot = sp.csc_array((np.ones(rows) if w is None else w, lab,
                           np.arange(rows + 1, dtype=np.int32)), shape=(sums.shape[0], rows))
    sums += onehot @ np.ascontiguousarray(xc)


def block_stats(
    x: Rows,
    weights: np.ndarray | None,
    centers: Rows | Prepared,
    distance: str = EUCLIDEAN,
) -> BlockStats:
    """Assign every row of one block and return the block's partial statistics.

    One sweep over the block: each chunk of :data:`CHUNK_ROWS` rows is assigned and added to
    the sums while it is still in the CPU cache, so a block larger than the cache is read from
    memory once per iteration, not twice. Same bits as :func:`nearest` over the whole block
    followed by the per-chunk sums (same chunks, same order of additions; the kernel tests
    check this bit for bit against that two-sweep reference).
    """
    n, d = x.shape
    p = prepare(centers)
    k = p.centers.shape[0]
    if sp.issparse(x):  # assign, then one sparse product: the sums are a CSR k x d matrix
        labels, dist = nearest(x, p, distance)
        w = np.ones(n) if weights is None else weights
        onehot = sp.csr_array((w, (labels, np.arange(n))), shape=(k, n))
        sums: Rows = onehot @ x
        return _stats(sums, labels, dist, weights, k)
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float64)
    sums = np.zeros((k, d))
    scores = _scores_buffer(x, p)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        xc = x[start:stop]
        lab, best = _nearest_chunk(xc, p, scores)
        labels[start:stop] = lab
        dist[start:stop] = _distances(xc, p, distance, lab, best)
        _add_chunk_sums(sums, xc, lab, None if weights is None else weights[start:stop])
    return _stats(sums, labels, dist, weights, k)


def _stats(sums: Rows, labels: np.ndarray, dist: np.ndarray, weights: np.ndarray | None,
           k: int) -> BlockStats:
    counts = np.bincount(labels, minlength=k).astype(np.int64)
    total = (counts.astype(np.float64) if weights is None
             else np.bincount(labels, weights=weights, minlength=k))
    cost = float(dist @ weights) if weights is not None else float(dist.sum())
    return BlockStats(sums, total, counts, cost)


def empty_stats(k: int, d: int) -> BlockStats:
    """Neutral element of :func:`merge_stats`."""
    return BlockStats(np.zeros((k, d)), np.zeros(k), np.zeros(k, dtype=np.int64), 0.0)


def merge_stats(parts: list[BlockStats] | tuple[BlockStats, ...], k: int, d: int,
                dense: bool = True) -> BlockStats:
    """Sum partial statistics in the order given (deterministic for a fixed order).

    The sums are a dense ``k x d`` array; with ``dense=False`` they stay a CSR matrix when
    every part's are (what a partition of CSR blocks sends to the driver: its non-zero sums
    only, not ``k x d`` numbers)."""
    if not dense and parts and all(sp.issparse(p.sums) for p in parts):
        sums: Rows = sp.csr_array((k, d))
        for p in parts:
            sums = sums + p.sums
        if sums.nnz > k * d // 2:  # mostly filled: 8 bytes an entry beat 12 a non-zero
            sums = sums.toarray()
    else:  # dense k x d: one pass a part (with k = 100, d = 2^18 a pass is 210 MB)
        first = parts[0].sums if parts else None
        sums = (first.copy() if isinstance(first, np.ndarray) else np.zeros((k, d)))
        for p in parts[1:] if isinstance(first, np.ndarray) else parts:
            if sp.issparse(p.sums):  # its (row, column) pairs are unique: a plain scatter-add
                coo = p.sums.tocoo()
                coo.sum_duplicates()
                sums[coo.row, coo.col] += coo.data
            else:
                sums += p.sums
    wsum, counts, cost = np.zeros(k), np.zeros(k, dtype=np.int64), 0.0
    for p in parts:
        wsum += p.weights
        counts += p.counts
        cost += p.cost
    return BlockStats(sums, wsum, counts, cost)


def center_moves(old: np.ndarray, new: np.ndarray, distance: str = EUCLIDEAN) -> np.ndarray:
    """How far every center moved: Euclidean distance, or cosine distance for ``"cosine"``."""
    if distance == COSINE:
        norms = np.sqrt(row_norms_sq(old) * row_norms_sq(new))
        return np.maximum(1.0 - np.einsum("ij,ij->i", old, new) / norms, 0.0)
    diff = new - old
    return np.sqrt(row_norms_sq(diff))


def update_centers(
    centers: np.ndarray, stats: BlockStats, distance: str = EUCLIDEAN
) -> tuple[np.ndarray, np.ndarray]:
    """New centers from merged statistics, and how far each one moved.

    A center is the weighted mean of its points (unit-normalised for cosine). A cluster with
    no weight keeps its previous center and moves 0: Spark's rule, where the walkthrough's
    code divided by zero.
    """
    new = np.array(centers, dtype=np.float64)  # two passes over k x d in all
    filled = stats.weights > 0
    np.divide(stats.sums, stats.weights[:, None], out=new, where=filled[:, None])
    if distance == COSINE:
        new[filled] = normalize_rows(new[filled])
    return new, center_moves(centers, new, distance)


def lloyd(
    x: np.ndarray,
    centers: np.ndarray,
    max_iter: int,
    tol: float,
    weights: np.ndarray | None = None,
    distance: str = EUCLIDEAN,
) -> tuple[np.ndarray, int]:
    """Lloyd's iterations on one in-memory array: the single-machine reference.

    Stops after ``max_iter`` iterations, or after the first iteration in which every center
    moved ``<= tol``. Returns the centers and the number of iterations run. Used by the
    k-means|| initialisation (on the weighted candidates) and in tests.
    """
    k, d = centers.shape
    it = 0
    while it < max_iter:
        stats = block_stats(x, weights, centers, distance)
        if sp.issparse(stats.sums):
            stats = merge_stats([stats], k, d)
        centers, moves = update_centers(centers, stats, distance)
        it += 1
        if np.all(moves <= tol):
            break
    return centers, it
