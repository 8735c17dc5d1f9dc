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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EUCLIDEAN = "euclidean"
COSINE = "cosine"

#: Rows per chunk for the ``n x k`` score matrix: bounds memory at ``CHUNK_ROWS * k`` doubles.
CHUNK_ROWS = 16384
#: Up to this many clusters (and fewer clusters than features) the partial sums are a dense
#: one-hot matrix product (BLAS); otherwise one weighted ``bincount`` per feature is faster.
ONE_HOT_MAX_K = 32
#: Up to this many clusters the nearest center is a running minimum over the centers' rows
#: of scores; above it ``argmin``.
RUNNING_MIN_MAX_K = 128


class BlockStats(NamedTuple):
    """Partial statistics of one block (or, after :func:`merge_stats`, of the whole data)."""

    sums: np.ndarray  # (k, d) weighted sums of the points assigned to each center
    weights: np.ndarray  # (k,) total weight assigned to each center
    counts: np.ndarray  # (k,) number of points assigned to each center (int64)
    cost: float  # sum of weight * distance to the nearest center


def row_norms_sq(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of every row."""
    return np.einsum("ij,ij->i", x, x)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (the cosine measure's view of the data).

    Rows of norm zero are returned unchanged; callers reject them before this point.
    """
    norms = np.sqrt(row_norms_sq(x))
    norms[norms == 0.0] = 1.0
    return x / norms[:, None]


def unit_centers(centers: np.ndarray, distance: str) -> np.ndarray:
    """The centers as :func:`nearest` needs them: contiguous float64, unit rows for cosine.

    Fitted cosine centers are unit vectors already; a model built by hand from other centers
    then assigns by the true cosine, as Spark does."""
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    return normalize_rows(centers) if distance == COSINE else centers


def nearest(
    x: np.ndarray,
    centers: np.ndarray,
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
    n = x.shape[0]
    k = centers.shape[0]
    if centers_sq is None:
        centers_sq = row_norms_sq(centers)
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float64)
    minus_2c = -2.0 * centers  # scaling by a power of two is exact: same bits as -2 (x.c)
    csq = centers_sq[:, None]
    for start in range(0, n, CHUNK_ROWS):
        xc = x[start : start + CHUNK_ROWS]
        score = minus_2c @ xc.T  # (k, rows)
        score += csq
        if k <= RUNNING_MIN_MAX_K:
            best = score[0].copy()
            lab = np.zeros(len(xc), dtype=np.int32)
            for j in range(1, k):
                closer = score[j] < best  # strict: a tie keeps the lower index
                np.minimum(best, score[j], out=best)
                lab[closer] = j
        else:
            lab = np.argmin(score, axis=0).astype(np.int32)
            best = score[lab, np.arange(len(xc))]
        if distance == COSINE:
            # best = |c|^2 - 2 x.c with |c| = 1, so x.c = (|c|^2 - best) / 2.
            d = 1.0 - (centers_sq[lab] - best) * 0.5
        else:
            d = row_norms_sq(xc) + best
        np.maximum(d, 0.0, out=d)
        labels[start : start + len(xc)] = lab
        dist[start : start + len(xc)] = d
    return labels, dist


def _add_chunk_sums(
    sums: np.ndarray, xc: np.ndarray, lab: np.ndarray, w: np.ndarray | None
) -> None:
    """``sums[j] += sum of w * row`` over the rows of the chunk ``xc`` labelled ``j``."""
    k, d = sums.shape
    rows = xc.shape[0]
    if k <= ONE_HOT_MAX_K and d > k:
        onehot = np.zeros((rows, k))
        onehot[np.arange(rows), lab] = 1.0 if w is None else w
        sums += onehot.T @ xc
    else:
        cols = np.ascontiguousarray(xc.T)  # a view when d == 1: not in place
        if w is not None:
            cols = cols * w
        for j in range(d):
            sums[:, j] += np.bincount(lab, weights=cols[j], minlength=k)


def block_stats(
    x: np.ndarray,
    weights: np.ndarray | None,
    centers: np.ndarray,
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
    k = centers.shape[0]
    centers_sq = row_norms_sq(centers)
    labels = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float64)
    sums = np.zeros((k, d))
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        xc = x[start:stop]
        lab, dc = nearest(xc, centers, distance, centers_sq)
        labels[start:stop] = lab
        dist[start:stop] = dc
        _add_chunk_sums(sums, xc, lab, None if weights is None else weights[start:stop])
    counts = np.bincount(labels, minlength=k).astype(np.int64)
    total = (counts.astype(np.float64) if weights is None
             else np.bincount(labels, weights=weights, minlength=k))
    cost = float(dist @ weights) if weights is not None else float(dist.sum())
    return BlockStats(sums, total, counts, cost)


def empty_stats(k: int, d: int) -> BlockStats:
    """Neutral element of :func:`merge_stats`."""
    return BlockStats(np.zeros((k, d)), np.zeros(k), np.zeros(k, dtype=np.int64), 0.0)


def merge_stats(parts: list[BlockStats] | tuple[BlockStats, ...], k: int, d: int) -> BlockStats:
    """Sum partial statistics in the order given (deterministic for a fixed order)."""
    total = empty_stats(k, d)
    sums, wsum, counts = total.sums, total.weights, total.counts
    cost = 0.0
    for p in parts:
        sums += p.sums
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
    new = centers.copy()
    filled = stats.weights > 0
    new[filled] = stats.sums[filled] / stats.weights[filled, None]
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
    _k, _d = centers.shape
    it = 0
    while it < max_iter:
        stats = block_stats(x, weights, centers, distance)
        centers, moves = update_centers(centers, stats, distance)
        it += 1
        if np.all(moves <= tol):
            break
    return centers, it


# --------------------------------------------------------------------------------------
# Seeding: randomness keyed by row content, so it does not depend on the partitioning
# --------------------------------------------------------------------------------------

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def row_uniforms(seed: int, stream: int, row_ids: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) for every global row id, fixed by ``(seed, stream, id)``.

    A counter-based generator: the number a row gets does not depend on which partition
    holds it or on how many partitions there are, so sampling is reproducible for a seed.
    """
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
        key = _splitmix64(np.array([key ^ np.uint64(stream & 0xFFFFFFFF)], dtype=np.uint64))[0]
        z = _splitmix64(row_ids.astype(np.uint64) ^ key)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def kmeans_plus_plus(
    points: np.ndarray,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    distance: str = EUCLIDEAN,
) -> np.ndarray:
    """Weighted k-means++ seeding on a small in-memory candidate set (driver side)."""
    n = points.shape[0]
    first = rng.choice(n, p=weights / weights.sum())
    chosen = [first]
    _, dist = nearest(points, points[[first]], distance)
    for _ in range(1, k):
        p = dist * weights
        total = p.sum()
        if total <= 0:
            break
        nxt = rng.choice(n, p=p / total)
        chosen.append(nxt)
        _, d_new = nearest(points, points[[nxt]], distance)
        np.minimum(dist, d_new, out=dist)
    return points[chosen]


def rows_hash(x: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every row's exact bits: the row's identity for seeding."""
    bits = np.ascontiguousarray(x).view(np.uint64)
    h = np.full(x.shape[0], 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bits.shape[1]):
            h ^= bits[:, j]
            h *= np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(29)
    return h


def row_keys(x: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """Uniforms in [0, 1) fixed by each row's content, the seed and the stream."""
    return row_uniforms(seed, stream, rows_hash(x))


def lowest_keys(x: np.ndarray, keys: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` rows with the smallest keys (ascending), as new arrays."""
    idx = np.argpartition(keys, m)[:m] if len(keys) > m else np.arange(len(keys))
    idx = idx[np.argsort(keys[idx], kind="stable")]
    return x[idx].copy(), keys[idx].copy()


def distinct_rows(x: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows ordered by key (the first occurrence of each kept)."""
    order = np.argsort(keys, kind="stable")
    x, keys = x[order], keys[order]
    _, first = np.unique(x, axis=0, return_index=True)
    first.sort()
    return x[first], keys[first]
