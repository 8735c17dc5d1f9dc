"""Params shared by ``LloydKMeans`` and ``LloydKMeansModel``, and their fit-time checks."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from pyspark.ml.linalg import Vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasDistanceMeasure,
    HasFeaturesCol,
    HasMaxIter,
    HasPredictionCol,
    HasSeed,
    HasTol,
    HasWeightCol,
)

from sparkml_lloyd._rows import HANDLE_INVALID

if TYPE_CHECKING:
    from sparkml_lloyd._fit import FitConfig

INIT_MODES = ("k-means||", "random")
DISTANCE_MEASURES = ("euclidean", "cosine")

#: pyspark's ``HasSeed`` default is ``hash(class name)``, which changes with PYTHONHASHSEED,
#: i.e. between Python processes. Ours is a fixed number, so a default fit is reproducible.
DEFAULT_SEED = zlib.crc32(b"sparkml_lloyd.LloydKMeans")


def _row(v: Any) -> list[float]:
    """One center as floats; TypeError for anything that is not a sequence of numbers."""
    if isinstance(v, Vector):
        return [float(e) for e in v.toArray()]
    if isinstance(v, (str, bytes)):  # iterable, but "12" is not the row [1.0, 2.0]
        raise TypeError(type(v).__name__)
    try:
        return [float(e) for e in v]
    except ValueError as e:  # float("a")
        raise TypeError(str(e)) from None


def _to_matrix(value: Any) -> list[list[float]]:
    """TypeConverter for ``initialCenters``: rows of floats (JSON-friendly for persistence).

    Raises TypeError (which pyspark reports naming the param) for anything but a non-empty
    k x d matrix of numbers.
    """
    try:
        if (isinstance(value, np.ndarray) and value.ndim != 2) or isinstance(value, (str, bytes)):
            raise TypeError(type(value).__name__)
        rows = [_row(v) for v in value]
    except TypeError:
        rows = []
    if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        raise TypeError(
            "initialCenters must be a non-empty k x d matrix: a 2-D numpy array, a list of "
            f"equal-length lists of numbers, or a list of Vectors; got {value!r:.200}."
        )
    return rows


class _LloydKMeansParams(
    HasFeaturesCol,
    HasPredictionCol,
    HasMaxIter,
    HasTol,
    HasSeed,
    HasDistanceMeasure,
    HasWeightCol,
):
    """Params of :class:`LloydKMeans` and :class:`LloydKMeansModel` (names, docs and defaults
    as in :class:`pyspark.ml.clustering.KMeans`, plus ``initialCenters``)."""

    k: Param[int] = Param(
        Params._dummy(),
        "k",
        "The number of clusters to create. Must be > 1.",
        typeConverter=TypeConverters.toInt,
    )
    initMode: Param[str] = Param(
        Params._dummy(),
        "initMode",
        'The initialization algorithm. This can be either "random" to '
        'choose random points as initial cluster centers, or "k-means||" '
        "to use a parallel variant of k-means++",
        typeConverter=TypeConverters.toString,
    )
    initSteps: Param[int] = Param(
        Params._dummy(),
        "initSteps",
        "The number of steps for k-means|| initialization mode. Must be > 0.",
        typeConverter=TypeConverters.toInt,
    )
    initialCenters: Param[list[list[float]]] = Param(
        Params._dummy(),
        "initialCenters",
        "k user-given initial cluster centers (k rows of numFeatures numbers). "
        "When set, they are used instead of initMode.",
        typeConverter=_to_matrix,
    )

    handleInvalid: Param[str] = Param(
        Params._dummy(),
        "handleInvalid",
        "How to handle invalid feature rows (null, another number of features than the model, "
        "NaN or infinite values, all zeros under the cosine measure): 'error' (raise), "
        "'skip' (drop the row) or 'keep' (null prediction). fit leaves invalid rows out "
        "under 'skip' and 'keep'.",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(
            handleInvalid="error",
            k=2,
            maxIter=20,
            tol=1e-4,
            seed=DEFAULT_SEED,
            initMode="k-means||",
            initSteps=2,
            distanceMeasure="euclidean",
        )

    def getK(self) -> int:
        """Gets the value of `k`."""
        return self.getOrDefault(self.k)

    def getInitMode(self) -> str:
        """Gets the value of `initMode`."""
        return self.getOrDefault(self.initMode)

    def getInitSteps(self) -> int:
        """Gets the value of `initSteps`."""
        return self.getOrDefault(self.initSteps)

    def getHandleInvalid(self) -> str:
        """Gets the value of `handleInvalid`."""
        return self.getOrDefault(self.handleInvalid)

    def getInitialCenters(self) -> list[list[float]] | None:
        """Gets the value of `initialCenters`, or None when it is not set."""
        return self.getOrDefault(self.initialCenters) if self.isSet(self.initialCenters) else None


def _choice(allowed: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in allowed), "one of " + ", ".join(repr(a) for a in allowed)


#: The declarative table of constraints, checked by :func:`validate` at fit time.
CONSTRAINTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "k": (lambda v: v > 1, "an integer > 1"),
    "maxIter": (lambda v: v >= 0, "an integer >= 0 (0 returns the initial centers)"),
    "tol": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "initSteps": (lambda v: v >= 1, "an integer >= 1"),
    "initMode": _choice(INIT_MODES),
    "distanceMeasure": _choice(DISTANCE_MEASURES),
    "handleInvalid": _choice(HANDLE_INVALID),
}


def check(params: Params, name: str) -> None:
    """Check one param against :data:`CONSTRAINTS`: a ``ValueError`` naming the param, the
    value and what is allowed."""
    ok, allowed = CONSTRAINTS[name]
    value = params.getOrDefault(name)
    if not ok(value):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}.")


def validate(params: _LloydKMeansParams) -> np.ndarray | None:
    """Check every param; return ``initialCenters`` as an array (or None).

    Raises ``ValueError`` naming the param, the value and what is allowed.
    """
    for name in CONSTRAINTS:
        check(params, name)
    centers = params.getInitialCenters()
    if centers is None:
        return None
    arr = np.asarray(centers, dtype=np.float64)
    k = params.getK()
    if arr.shape[0] != k:
        raise ValueError(
            f"initialCenters has {arr.shape[0]} rows but k={k}; give exactly k centers "
            "(or set k to the number of rows)."
        )
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(
            f"initialCenters row {bad[0]} ({arr[bad[0]].tolist()}) contains NaN or infinite "
            "values; give finite centers."
        )
    zero = np.flatnonzero((arr == 0).all(axis=1))
    if params.getDistanceMeasure() == "cosine" and zero.size:
        raise ValueError(
            f"initialCenters row {zero[0]} is all zeros, for which the cosine distance is "
            "undefined; give non-zero centers or use distanceMeasure='euclidean'."
        )
    return arr


def fit_config(params: _LloydKMeansParams) -> FitConfig:
    """What a fit needs from an estimator's params, every param checked first."""
    from sparkml_lloyd._fit import FitConfig

    initial = validate(params)
    return FitConfig(
        k=params.getK(), max_iter=params.getMaxIter(), tol=params.getTol(),
        seed=params.getSeed(), init_mode=params.getInitMode(), init_steps=params.getInitSteps(),
        distance=params.getDistanceMeasure(), features_col=params.getFeaturesCol(),
        weight_col=(params.getOrDefault(params.weightCol) if params.isDefined(params.weightCol)
                    else None),
        handle_invalid=params.getHandleInvalid(), initial_centers=initial,
    )
