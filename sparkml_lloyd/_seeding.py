"""Seeding helpers of the numpy kernel: randomness keyed by row content, sets of rows, and
k-means++ (no Spark).

Every random choice of the initialisation draws a uniform number per *row content* (a hash
of the row's non-zero entries, the seed and a stream number), never per position, so which
rows are chosen does not depend on how the data is partitioned, ordered or stored: a row held
in a dense block and the same row in a CSR block get the same number. Rows here are dense
arrays or CSR matrices (see :mod:`sparkml_lloyd._kernel`); sets of rows drawn from several
blocks are stacked into one kind with :func:`stack_rows`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sparkml_lloyd._kernel import EUCLIDEAN, Rows, nearest

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def row_uniforms(seed: int, stream: int, row_ids: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) for every row id, fixed by ``(seed, stream, id)``.

    A counter-based generator: the number a row gets does not depend on which partition
    holds it or on how many partitions there are, so sampling is reproducible for a seed.
    """
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
        key = _splitmix64(np.array([key ^ np.uint64(stream & 0xFFFFFFFF)], dtype=np.uint64))[0]
        z = _splitmix64(row_ids.astype(np.uint64) ^ key)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _column_keys(columns: np.ndarray) -> np.ndarray:
    """An odd 64-bit multiplier per feature index."""
    with np.errstate(over="ignore"):
        return _splitmix64(columns.astype(np.uint64)) | np.uint64(1)


def rows_hash(x: Rows) -> np.ndarray:
    """A 64-bit hash of every row: the sum over its non-zero entries ``(j, v)`` of
    ``(bits(v) ^ j) * key(j)`` (mod 2^64), mixed. Zeros (also -0.0 and a CSR matrix's stored
    zeros) do not count, so a row has one hash whether it is stored dense or sparse."""
    n, d = x.shape
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        if sp.issparse(x):
            data = np.ascontiguousarray(x.data, dtype=np.float64)
            cols = x.indices.astype(np.uint64)
            terms = ((data.view(np.uint64) ^ cols) * _column_keys(cols))
            terms[data == 0.0] = 0
            sums = np.concatenate([np.zeros(1, np.uint64), np.cumsum(terms, dtype=np.uint64)])
            h = sums[x.indptr[1:]] - sums[x.indptr[:-1]]
        else:
            x = np.ascontiguousarray(x, dtype=np.float64)
            bits = x.view(np.uint64)
            keys = _column_keys(np.arange(d))
            for j in range(d):
                term = (bits[:, j] ^ np.uint64(j)) * keys[j]
                h += np.where(x[:, j] != 0.0, term, np.uint64(0))
        return _splitmix64(h)


def row_keys(x: Rows, seed: int, stream: int) -> np.ndarray:
    """Uniforms in [0, 1) fixed by each row's content, the seed and the stream."""
    return row_uniforms(seed, stream, rows_hash(x))


def lowest_keys(x: Rows, keys: np.ndarray, m: int) -> tuple[Rows, np.ndarray]:
    """The ``m`` distinct rows with the smallest keys (ascending), as new arrays.

    Equal rows have equal keys, so copies of a row sit side by side in key order and count
    once: the ``m`` kept are those a search of all the rows would find, whatever ``m`` (a
    larger ``m`` keeps a superset). A fit's seeding sample is the same rows for ``k`` as a
    prefix of the sample for any larger ``k``."""
    take = m
    while True:
        idx = np.argpartition(keys, take)[:take] if len(keys) > take else np.arange(len(keys))
        idx = idx[np.argsort(keys[idx], kind="stable")]
        sx, sk = distinct_rows(x[idx], keys[idx])
        if sx.shape[0] >= m or len(idx) == len(keys):
            return sx[:m], sk[:m]
        take *= 4


def stack_rows(parts: list[Rows]) -> Rows:
    """The rows of ``parts`` in order, as one dense array when every part is dense, else as
    one canonical CSR matrix (sorted indices, no stored zeros)."""
    if not any(sp.issparse(p) for p in parts):
        return np.vstack(parts)
    stacked = sp.vstack([sp.csr_array(p) for p in parts], format="csr")
    stacked.eliminate_zeros()
    stacked.sort_indices()
    return sp.csr_array(stacked)


def to_dense(x: Rows) -> np.ndarray:
    """Rows as a dense float64 array (for a small set of rows: the centers)."""
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def _row_identity(x: Rows) -> list[bytes]:
    """Bytes that are equal exactly when two rows are (canonical CSR: indices and values of
    the non-zeros; -0.0 is 0.0)."""
    x = stack_rows([x]) if sp.issparse(x) else sp.csr_array(np.where(x == 0.0, 0.0, x))
    x.eliminate_zeros()
    return [x.indices[a:b].tobytes() + x.data[a:b].tobytes()
            for a, b in zip(x.indptr[:-1], x.indptr[1:], strict=True)]


def distinct_rows(x: Rows, keys: np.ndarray) -> tuple[Rows, np.ndarray]:
    """Distinct rows ordered by key (the first occurrence of each kept)."""
    order = np.argsort(keys, kind="stable")
    x, keys = x[order], keys[order]
    seen: set[bytes] = set()
    first = []
    for i, identity in enumerate(_row_identity(x)):
        if identity not in seen:
            seen.add(identity)
            first.append(i)
    return x[first], keys[first]


def unique_rows(x: Rows) -> Rows:
    """The distinct rows in an order fixed by their values only (sorted by their identity
    bytes, dense or sparse alike), so a set gathered from partitions is the same whatever the
    partitioning and however its blocks were stored."""
    found = dict(zip(_row_identity(x), range(x.shape[0]), strict=True))
    return x[[found[key] for key in sorted(found)]]


def kmeans_plus_plus(
    points: Rows,
    weights: np.ndarray,
    k: int,
    rng: np.random.Generator,
    distance: str = EUCLIDEAN,
) -> Rows:
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
