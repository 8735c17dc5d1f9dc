"""What one pass of a fit computes over one partition's blocks (executor side, numpy only).

Each pass function takes the partition's blocks as a list of ``(x, w)`` (``w`` None: every row
weighs 1) and the pass's centers, and returns one small picklable result; the driver
(:mod:`sparkml_lloyd._fit`) combines the results of all partitions in partition order. A
transport (:mod:`sparkml_lloyd._transport`) carries them by reference: any of these functions
may be sent to a task.

Every pass is one rule per block (:data:`_KINDS`: what a block gives, and how a partition's
parts combine), so :func:`many_pass` can serve the passes of several fits in one sweep: each
block is read once, while it is in the CPU's cache, for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from sparkml_lloyd import _kernel as K
from sparkml_lloyd import _seeding as S

Block = tuple[K.Rows, "np.ndarray | None"]
#: One pass of one fit: ``(pass function, centers, keyword arguments)``.
Request = tuple[Callable[..., Any], Any, dict[str, Any]]

#: Random stream of the extra distinct points added when the seeding has too few.
STREAM_TOPUP = 1_000_000


def _stats_block(x: K.Rows, w: np.ndarray | None, prepared: Any, distance: str) -> Any:
    return K.block_stats(x, w, prepared, distance)


def _stats_merge(parts: list[Any], centers: np.ndarray) -> K.BlockStats:
    return K.merge_stats(parts, centers.shape[0], centers.shape[1], dense=False)


def _cost_block(x: K.Rows, w: np.ndarray | None, prepared: Any, distance: str) -> float:
    _, dist = K.nearest(x, prepared, distance)
    return float(dist.sum() if w is None else dist @ w)


def _cost_merge(parts: list[float], centers: Any) -> float:
    total = 0.0
    for part in parts:
        total += part
    return total


def _sample_block(x: K.Rows, w: np.ndarray | None, prepared: Any, distance: str, seed: int,
                  stream: int, factor: float) -> tuple[K.Rows, np.ndarray] | None:
    _, dist = K.nearest(x, prepared, distance)
    p = dist * factor if w is None else dist * w * factor
    keys = S.row_keys(x, seed, stream)
    keep = keys < p
    return (x[keep], keys[keep]) if keep.any() else None


def _topup_block(x: K.Rows, w: np.ndarray | None, prepared: Any, distance: str, seed: int,
                 m: int) -> tuple[K.Rows, np.ndarray] | None:
    _, dist = K.nearest(x, prepared, distance)
    far = dist > 0 if w is None else (dist > 0) & (w > 0)
    if not far.any():
        return None
    xs = x[far]
    return S.lowest_keys(xs, S.row_keys(xs, seed, STREAM_TOPUP), m)


def _found(parts: list[Any], centers: Any) -> list[Any]:
    return [p for p in parts if p is not None]


class _Kind(NamedTuple):
    block: Callable[..., Any]   # (x, w, prepared centers, **kwargs) -> a block's part
    merge: Callable[[list[Any], Any], Any]  # (the parts in block order, centers) -> result


def _sweep(kind: _Kind, blocks: list[Block], centers: Any, kwargs: dict[str, Any],
           backwards: bool = False) -> Any:
    prepared = K.prepare(centers)
    parts = [kind.block(x, w, prepared, **kwargs)
             for x, w in (blocks[::-1] if backwards else blocks)]
    if backwards:
        parts.reverse()
    return kind.merge(parts, centers)


def stats_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, backwards: bool = False
) -> K.BlockStats:
    """Partial statistics of a partition (one Lloyd assignment step).

    ``backwards`` visits the blocks last to first: a fit alternates the direction every
    iteration, so the blocks a pass read last, still in the CPU's cache, are the first the
    next pass reads (a partition larger than the cache, read in the same order every time,
    would find none of its blocks there). The parts are merged in block order either way:
    same bits in both directions."""
    return _sweep(_KINDS[stats_pass], blocks, centers, {"distance": distance}, backwards)


def cost_pass(blocks: list[Block], centers: np.ndarray, distance: str) -> float:
    """The partition's (weighted) cost at ``centers``."""
    return _sweep(_KINDS[cost_pass], blocks, centers, {"distance": distance})


def sample_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, seed: int, stream: int,
    factor: float,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-means|| step: keep each row with probability min(1, factor * w * cost)."""
    return _sweep(_KINDS[sample_pass], blocks, centers,
                  {"distance": distance, "seed": seed, "stream": stream, "factor": factor})


def topup_pass(
    blocks: list[Block], centers: np.ndarray, distance: str, seed: int, m: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows not equal to any current center (distance > 0, weight > 0), lowest keys first."""
    return _sweep(_KINDS[topup_pass], blocks, centers,
                  {"distance": distance, "seed": seed, "m": m})


_KINDS: dict[Callable[..., Any], _Kind] = {
    stats_pass: _Kind(_stats_block, _stats_merge),
    cost_pass: _Kind(_cost_block, _cost_merge),
    sample_pass: _Kind(_sample_block, _found),
    topup_pass: _Kind(_topup_block, _found),
}


def many_pass(blocks: list[Block], requests: list[Request], backwards: bool = False) -> list[Any]:
    """The passes of several fits in one sweep: for each block, every request's part, so a
    block is read from memory once for all of them. Returns each request's result, the same
    as its pass function alone would (``backwards`` as in :func:`stats_pass`; a request's own
    direction does not change its bits and is ignored)."""
    kinds = [_KINDS[fn] for fn, _, _ in requests]
    prepared = [K.prepare(centers) for _, centers, _ in requests]
    kwargs = [{k: v for k, v in kw.items() if k != "backwards"} for _, _, kw in requests]
    parts: list[list[Any]] = [[] for _ in requests]
    for x, w in (blocks[::-1] if backwards else blocks):
        for i, kind in enumerate(kinds):
            parts[i].append(kind.block(x, w, prepared[i], **kwargs[i]))
    results = []
    for kind, (_, centers, _), mine in zip(kinds, requests, parts, strict=True):
        if backwards:
            mine.reverse()
        results.append(kind.merge(mine, centers))
    return results
