"""``fitMultiple``: many models from one preparation of the data, in the same passes.

pyspark's own ``Estimator.fitMultiple`` fits one model after another, each reading and
preparing the data again. Here the param maps are grouped by what shapes the prepared data
(:func:`sparkml_lloyd._fit.preparation_key`: features and weight columns, distance, seed);
each group is prepared once and its fits advance together
(:func:`sparkml_lloyd._fit.run_many`). The models come back through pyspark's contract: an
iterator of ``(index, model)``, safe to share between threads (CrossValidator's
``parallelism`` calls ``next`` from several); the first ``next`` runs every fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from sparkml_lloyd import _fit

M = TypeVar("M")
#: A backend's ``fit_many`` (:func:`sparkml_lloyd._classic.fit_many`, ``_connect``'s).
FitMany = Callable[[Any, list[_fit.FitConfig], list[Any]], list[Any]]


def fit_groups(fit_many: FitMany, dataset: Any, cfgs: list[_fit.FitConfig],
               callbacks: list[Any]) -> list[_fit.FitResult | ValueError]:
    """Every config's result, in order: one ``fit_many`` per group of configs that share a
    preparation (in order of first appearance)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(_fit.preparation_key(cfg), []).append(i)
    results: list[_fit.FitResult | ValueError | None] = [None] * len(cfgs)
    for members in groups.values():
        done = fit_many(dataset, [cfgs[i] for i in members], [callbacks[i] for i in members])
        for i, result in zip(members, done, strict=True):
            results[i] = result
    return [r for r in results if r is not None]


class FitMultipleIterator(Generic[M], Iterator[tuple[int, M]]):
    """``(index, model)`` for every param map, in index order; thread-safe. ``fit_all``
    returns every model (or the ``ValueError`` of a fit the data could not serve, raised by
    the ``next`` that reaches it); it runs once, on the first ``next``."""

    def __init__(self, fit_all: Callable[[], list[M | ValueError]], count: int) -> None:
        self._fit_all = fit_all
        self._count = count
        self._index = 0
        self._models: list[M | ValueError] | None = None
        self._failure: BaseException | None = None
        self._lock = threading.Lock()

    def __iter__(self) -> FitMultipleIterator[M]:
        return self

    def __next__(self) -> tuple[int, M]:
        with self._lock:
            if self._index >= self._count:
                raise StopIteration
            if self._failure is not None:
                raise self._failure
            if self._models is None:
                try:
                    self._models = self._fit_all()
                except BaseException as exc:  # every later next() says the same
                    self._failure = exc
                    raise
            index = self._index
            self._index += 1
            model = self._models[index]
        if isinstance(model, ValueError):
            raise model
        return index, model
