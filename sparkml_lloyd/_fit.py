"""The fit driver: initialisation, Lloyd iterations and convergence, on any backend.

It sees the data only through a :class:`~sparkml_lloyd._transport.Passes` (one call runs one
pass function of :mod:`sparkml_lloyd._passes` on every partition and returns the partitions'
results in order) and the preparation pass's :class:`~sparkml_lloyd._prepare.Findings`. How
the passes reach the blocks (the executor loop, one Spark job per pass, another backend) is
the transport's business; the numbers are the same either way.

A fit is written as a generator of passes (:func:`steps`): it yields each pass it needs as a
``(function, centers, kwargs)`` request and is sent the partitions' results.
:func:`run_many` drives one fit, or several over the same data together: their pending
passes served by one :func:`~sparkml_lloyd._passes.many_pass` (a fit that converges drops
out). Each fit computes exactly what it would alone.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sparkml_lloyd import _kernel as K
from sparkml_lloyd import _memory, _passes
from sparkml_lloyd import _seeding as S
from sparkml_lloyd._prepare import Findings, raise_for_data
from sparkml_lloyd._summary import IterationRecord

logger = logging.getLogger("sparkml_lloyd")

#: What a live observer of a fit gets after every iteration: the record and the new centers.
IterationCallback = Callable[[IterationRecord, np.ndarray], None]
#: A fit as a generator of passes: yields requests, is sent each pass's partition results.
Steps = Generator[_passes.Request, list[Any], Any]


class Passes(Protocol):
    """What the driver needs of a transport: run a pass function of
    :mod:`sparkml_lloyd._passes` over every partition's blocks."""

    def run(self, fn: Callable[..., Any], centers: Any, **kwargs: Any) -> list[Any]:
        """``fn(blocks, centers, **kwargs)`` on every partition; results in partition order."""

    def close(self) -> None:
        """Release what the transport holds (idempotent)."""


@dataclass(frozen=True)
class FitConfig:
    """Validated parameters of one fit (see ``LloydKMeans``)."""

    k: int
    max_iter: int
    tol: float
    seed: int
    init_mode: str
    init_steps: int
    distance: str
    features_col: str
    weight_col: str | None
    handle_invalid: str
    initial_centers: np.ndarray | None


@dataclass
class FitResult:
    """What a fit returns to the estimator."""

    centers: np.ndarray
    cost_history: list[float]
    cluster_sizes: list[int]
    iterations: list[IterationRecord]
    converged: bool

    @property
    def num_iter(self) -> int:
        return len(self.iterations)

    @property
    def training_cost(self) -> float:
        return self.cost_history[-1]


def check_data(found: Findings, cfg: FitConfig) -> None:
    """The verdict on the preparation pass's findings, before any transport starts: a
    ``ValueError`` for unusable data or ``initialCenters`` of another width; an ``OSError``
    (``ENOSPC``) when blocks found no room on their hosts."""
    if found.no_room:
        raise OSError(errno.ENOSPC, f"{len(found.no_room)} of the data's blocks found no "
                      f"room; the first: {found.no_room[0]}")
    raise_for_data(found, cfg.features_col, cfg.weight_col, cfg.handle_invalid)
    if found.invalid:
        logger.info("left out %d invalid rows (handleInvalid=%r)",
                    sum(found.invalid.values()), cfg.handle_invalid)
    d = next(iter(found.lengths))
    c = cfg.initial_centers
    if c is not None and c.shape[1] != d:
        raise ValueError(
            f"initialCenters has {c.shape[1]} columns but the vectors in "
            f"featuresCol={cfg.features_col!r} have {d} features; give centers of {d} "
            "numbers each."
        )


def memory_plan(cfg: FitConfig, d: int, partitions: int,
                found: Findings | None) -> _memory.Plan:
    """The fit's sizes; before the preparation pass (``found`` None) the least it will hold:
    sparse rows. Dense blocks send ``k x d`` partial sums and make the k-means|| candidates
    (about 2k a round, plus one) dense too; CSR blocks send sparse sums, at most as many
    entries as they hold."""
    centers = cfg.k * d * 8
    dense = found is not None and found.dense_blocks > 0
    sparse_bytes = sum(found.hosts.blocks.values()) if found is not None else 0
    results = partitions * centers if dense else min(partitions * centers, sparse_bytes)
    candidates = (2 * cfg.k * cfg.init_steps + 1
                  if dense and cfg.initial_centers is None and cfg.init_mode == "k-means||"
                  else 0)
    return _memory.Plan(k=cfg.k, d=d, candidates=candidates, chunk_rows=K.CHUNK_ROWS,
                        results=results)


def only(results: list[FitResult | ValueError]) -> FitResult:
    """The result of a single fit from a backend's ``fit_many`` (its ``ValueError`` raised)."""
    (result,) = results
    if isinstance(result, ValueError):
        raise result
    return result


def memory_plan_many(cfgs: list[FitConfig], d: int, partitions: int,
                     found: Findings | None) -> _memory.Plan:
    """The sizes of several fits advancing together: their centers, candidates and pass
    results add up (the per-pass temporaries too, an overestimate: the fits take turns)."""
    plans = [memory_plan(cfg, d, partitions, found) for cfg in cfgs]
    return _memory.Plan(k=sum(p.k for p in plans), d=d,
                        candidates=sum(p.candidates for p in plans),
                        chunk_rows=K.CHUNK_ROWS, results=sum(p.results for p in plans),
                        fits=len(plans))


def shared_preparation(cfgs: list[FitConfig]) -> dict[str, Any]:
    """What the data's preparation takes from the configs of fits that share it; they must
    agree on the columns, the distance and the seed (the seeding sample's keys). The sample
    is that of the largest k: the sample of a smaller k is its prefix
    (:func:`sparkml_lloyd._seeding.lowest_keys`)."""
    keys = {preparation_key(cfg) for cfg in cfgs}
    if len(keys) != 1:
        raise ValueError(f"fits sharing one preparation differ in {sorted(keys)}")
    cfg = cfgs[0]
    return {"has_weight": bool(cfg.weight_col), "cosine": cfg.distance == K.COSINE,
            "seed": cfg.seed, "sample_size": max(c.k for c in cfgs)}


def preparation_key(cfg: FitConfig) -> tuple[Any, ...]:
    """The params that shape the prepared data: fits equal in these share one preparation."""
    return (cfg.features_col, cfg.weight_col, cfg.distance, cfg.seed)


def run_many(passes: Passes, found: Findings, cfgs: list[FitConfig],
             on_iteration: list[IterationCallback | None] | None = None,
             ) -> list[FitResult | ValueError]:
    """Fits over the same data, together: every round, the pending pass of each fit still
    running, in one :func:`~sparkml_lloyd._passes.many_pass` (one pass alone goes as
    itself: one fit runs its passes one after another). Each fit's result is what it
    computes alone; a fit the data cannot serve (a ``ValueError``: fewer distinct points
    than its k) gives its error and the others go on. Call :func:`check_data` for every
    config first."""
    callbacks = on_iteration or [None] * len(cfgs)
    fits = [steps(found, cfg, cb) for cfg, cb in zip(cfgs, callbacks, strict=True)]
    results: list[FitResult | ValueError | None] = [None] * len(fits)
    pending: dict[int, _passes.Request] = {}

    def advance(i: int, sent: list[Any] | None) -> None:
        try:
            pending[i] = next(fits[i]) if sent is None else fits[i].send(sent)
        except StopIteration as done:
            results[i] = done.value
            pending.pop(i, None)
        except ValueError as exc:
            results[i] = exc
            pending.pop(i, None)

    for i in range(len(fits)):
        advance(i, None)
    backwards = False
    while pending:
        order = sorted(pending)
        if len(order) == 1:
            fn, centers, kwargs = pending[order[0]]
            answers = [passes.run(fn, centers, **kwargs)]
        else:
            per_partition = passes.run(_passes.many_pass, [pending[i] for i in order],
                                       backwards=backwards)
            answers = [list(part) for part in zip(*per_partition, strict=True)]
            backwards = not backwards
        for i, answer in zip(order, answers, strict=True):
            advance(i, answer)
    return [r for r in results if r is not None]


def _pass(fn: Callable[..., Any], centers: Any, **kwargs: Any) -> Steps:
    """One pass of a fit: the partitions' results, in partition order."""
    return (yield (fn, centers, kwargs))


def steps(found: Findings, cfg: FitConfig,
          on_iteration: IterationCallback | None = None) -> Steps:
    """The fit as a generator of passes (its return value is the :class:`FitResult`).
    Initial centers, then Lloyd iterations until every center moves ``<= tol`` or
    ``maxIter`` iterations ran. The pass after the last update measures the final centers
    (cost and sizes of what ``transform`` assigns); when nothing moved, the last pass already
    did and no further pass runs."""
    d = next(iter(found.lengths))
    centers = yield from initial_centers(found, cfg)
    started = time.perf_counter()
    stats = yield from _assign(centers, cfg, d, backwards=False)
    cost_history = [stats.cost]
    records: list[IterationRecord] = []
    converged = False
    while len(records) < cfg.max_iter:
        new, moves = K.update_centers(centers, stats, cfg.distance)
        now = time.perf_counter()
        record = IterationRecord(iteration=len(records) + 1, cost=stats.cost,
                                 maxMove=float(moves.max()),
                                 clusterSizes=stats.counts.tolist(), seconds=now - started)
        records.append(record)
        started = now
        logger.info("%s", record)
        if on_iteration is not None:
            on_iteration(record, new.copy())
        converged = bool(np.all(moves <= cfg.tol))
        if not np.any(moves > 0):
            # Nothing moved: the pass just made already measured these centers.
            cost_history.append(stats.cost)
            break
        centers = new
        # This pass measures the new centers and gives the sums for the next update.
        stats = yield from _assign(centers, cfg, d, backwards=len(records) % 2 == 1)
        cost_history.append(stats.cost)
        if converged:
            break
    logger.info("finished after %d iterations (%s): cost %.6g, cluster sizes %s",
                len(records), "converged" if converged else "maxIter reached", stats.cost,
                stats.counts.tolist())
    return FitResult(centers=centers, cost_history=cost_history,
                     cluster_sizes=stats.counts.tolist(), iterations=records,
                     converged=converged)


def _assign(centers: np.ndarray, cfg: FitConfig, d: int, backwards: bool) -> Steps:
    parts = yield from _pass(_passes.stats_pass, centers, distance=cfg.distance,
                             backwards=backwards)
    return K.merge_stats(parts, centers.shape[0], d)


def initial_centers(found: Findings, cfg: FitConfig) -> Steps:
    """``initialCenters`` as given, else the ``initMode`` seeding."""
    if cfg.initial_centers is not None:
        c = cfg.initial_centers
        return K.normalize_rows(c) if cfg.distance == K.COSINE else c.copy()
    if cfg.init_mode == "random":
        return (yield from _init_random(found, cfg))
    return (yield from _init_kmeans_parallel(found, cfg))


def _too_few_distinct(found: int, k: int) -> ValueError:
    return ValueError(
        f"The data has only {found} distinct points (rows with weight > 0), fewer than "
        f"k={k}. Lower k to at most {found}."
    )


def _fill_to_k(centers: np.ndarray, cfg: FitConfig) -> Steps:
    """Add distinct data points (lowest keys first) until there are k centers."""
    while centers.shape[0] < cfg.k:
        parts = yield from _pass(_passes.topup_pass, centers, distance=cfg.distance,
                                 seed=cfg.seed, m=cfg.k)
        found = [f for part in parts for f in part]
        if not found:
            raise _too_few_distinct(centers.shape[0], cfg.k)
        x, _keys = S.distinct_rows(S.stack_rows([f[0] for f in found]),
                                   np.concatenate([f[1] for f in found]))
        centers = S.stack_rows([centers, x[: cfg.k - centers.shape[0]]])
    return S.to_dense(centers)


def _init_random(found: Findings, cfg: FitConfig) -> Steps:
    """k distinct points with the smallest content keys: a uniform sample, seeded."""
    x, _ = S.distinct_rows(S.stack_rows(found.sample_x), np.concatenate(found.sample_keys))
    return (yield from _fill_to_k(x[: cfg.k], cfg))


def _init_kmeans_parallel(found: Findings, cfg: FitConfig) -> Steps:
    """k-means|| (Bahmani et al.) as in Spark: a random first center, ``initSteps`` rounds
    sampling about 2k points with probability proportional to weight x cost, then weighted
    k-means++ and 30 local Lloyd iterations on the candidates."""
    sx, sk = S.stack_rows(found.sample_x), np.concatenate(found.sample_keys)
    candidates = sx[[int(np.argmin(sk))]]
    for step in range(cfg.init_steps):
        total = sum((yield from _pass(_passes.cost_pass, candidates, distance=cfg.distance)))
        if total <= 0:
            break
        parts = yield from _pass(_passes.sample_pass, candidates, distance=cfg.distance,
                                 seed=cfg.seed, stream=step + 1, factor=2.0 * cfg.k / total)
        chosen = [c for part in parts for c in part]
        if chosen:
            new, _ = S.distinct_rows(S.stack_rows([c[0] for c in chosen]),
                                     np.concatenate([c[1] for c in chosen]))
            candidates = S.stack_rows([candidates, new])
    candidates = S.unique_rows(candidates)  # sorted: independent of partition order
    if candidates.shape[0] <= cfg.k:
        return (yield from _fill_to_k(candidates, cfg))
    parts = yield from _pass(_passes.stats_pass, candidates, distance=cfg.distance)
    stats = K.merge_stats(parts, candidates.shape[0], candidates.shape[1])
    weights = stats.weights
    keep = weights > 0
    candidates, weights = candidates[keep], weights[keep]
    if candidates.shape[0] <= cfg.k:
        return (yield from _fill_to_k(candidates, cfg))
    rng = np.random.default_rng(cfg.seed & 0xFFFFFFFFFFFFFFFF)
    start = S.to_dense(S.kmeans_plus_plus(candidates, weights, cfg.k, rng, cfg.distance))
    centers, _ = K.lloyd(candidates, start, 30, 0.0, weights, cfg.distance)
    return centers
