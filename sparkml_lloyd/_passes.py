"""What one pass of a fit computes over one partition's blocks (executor side, numpy only).

Each function takes the partition's blocks as a list of ``(x, w)`` (``w`` None: every row
weighs 1) and the pass's centers, and returns one small picklable result; the driver
(:mod:`sparkml_lloyd._fit`) combines the results of all partitions in partition order. A
transport (:mod:`sparkml_lloyd._transport`) carries them by reference: any of these functions
may be sent to a task.
"""

from __future__ import annotations

import numpy as np

from sparkml_lloyd import _kernel as K
from sparkml_lloyd import _seeding as S

Block = tuple[K.Rows, "np.ndarray | None"]

#: Random stream of the extra distinct points added when the seeding has too few.
STREAM_TOPUP = 1_000_000


def stats_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, backwards: bool = False
) -> K.BlockStats:
    """Partial statistics of a partition (one Lloyd assignment step).

    ``backwards`` visits the blocks last to first: a fit alternates the direction every
    iteration, so the blocks a pass read last, still in the CPU's cache, are the first the
    next pass reads (a partition larger than the cache, read in the same order every time,
    would find none of its blocks there). The parts are merged in block order either way:
    same bits in both directions."""
    prepared = K.prepare(centers)
    parts = [K.block_stats(x, w, prepared, distance)
             for x, w in (blocks[::-1] if backwards else blocks)]
    if backwards:
        parts.reverse()
    return K.merge_stats(parts, centers.shape[0], centers.shape[1], dense=False)


def cost_pass(blocks: list[Block], centers: np.ndarray, distance: str) -> float:
    """The partition's (weighted) cost at ``centers``."""
    total = 0.0
    prepared = K.prepare(centers)
    for x, w in blocks:
        _, dist = K.nearest(x, prepared, distance)
        total += float(dist.sum() if w is None else dist @ w)
    return total


def sample_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, seed: int, stream: int,
    factor: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-means|| step: keep each row with probability min(1, factor * w * cost)."""
    out = []
    prepared = K.prepare(centers)
    for x, w in blocks:
        _, dist = K.nearest(x, prepared, distance)
        p = dist * factor if w is None else dist * w * factor
        keys = S.row_keys(x, seed, stream)
        keep = keys < p
        if keep.any():
            out.append((x[keep], keys[keep]))
    return out


def topup_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, seed: int, m: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows not equal to any current center (distance > 0, weight > 0), lowest keys first."""
    out = []
    prepared = K.prepare(centers)
    for x, w in blocks:
        _, dist = K.nearest(x, prepared, distance)
        far = dist > 0 if w is None else (dist > 0) & (w > 0)
        if far.any():
            xs = x[far]
            out.append(S.lowest_keys(xs, S.row_keys(xs, seed, STREAM_TOPUP), m))
    return out
