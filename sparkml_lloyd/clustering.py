"""``LloydKMeans`` (Estimator) and ``LloydKMeansModel`` (Model).

Thin classes (see docs/design.md for the module map): Params and their checks are in
:mod:`sparkml_lloyd._params`, the fit in :mod:`sparkml_lloyd._classic` and
:mod:`sparkml_lloyd._fit`, prediction in :mod:`sparkml_lloyd._predict`, saving and loading in
:mod:`sparkml_lloyd._persistence`. Saved stages name these classes by this module's path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.linalg import Vector
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame

from sparkml_lloyd import (
    _classic,
    _compat,
    _connect,
    _fit,
    _multi,
    _persistence,
    _predict,
    _predict_arrow,
    _summary,
)
from sparkml_lloyd._params import _LloydKMeansParams, check, fit_config
from sparkml_lloyd._persistence import AtomicWriter, CheckedReader
from sparkml_lloyd._summary import IterationRecord, LloydKMeansSummary

__all__ = ["IterationRecord", "LloydKMeans", "LloydKMeansModel", "LloydKMeansSummary"]

#: A param map as pyspark.ml passes them (``{param: value}``).
ParamMap = dict[Any, Any]


def _backend(dataset: DataFrame) -> Any:
    """The fit's backend for ``dataset``'s session: classic Spark or Spark Connect."""
    return _classic if _compat.is_classic(dataset) else _connect


class LloydKMeans(_LloydKMeansParams, Estimator["LloydKMeansModel"], MLWritable, MLReadable):
    """Lloyd's k-means on Spark with vectorised numpy partitions.

    Params, defaults and behaviour follow :class:`pyspark.ml.clustering.KMeans`; in addition
    ``initialCenters`` fixes the starting centers, ``handleInvalid`` says what to do with
    invalid feature rows (``"error"``, the default, ``"skip"`` or ``"keep"``), and the summary
    has ``costHistory``, one record per iteration (``iterations``) and ``converged``.
    :meth:`setIterationCallback` follows a fit live.

    An iteration assigns every point to its nearest center, then moves each center to the
    (weighted) mean of its points. The fit stops after ``maxIter`` iterations or after the
    first iteration in which every center moved by at most ``tol`` (Euclidean distance, or
    cosine distance with ``distanceMeasure="cosine"``). With ``tol=0`` that is "no point
    changed cluster". A cluster that loses all its points keeps its center.

    Examples
    --------
    >>> from pyspark.ml.linalg import Vectors
    >>> data = [(Vectors.dense([0.0, 0.0]),), (Vectors.dense([1.0, 1.0]),),
    ...         (Vectors.dense([9.0, 8.0]),), (Vectors.dense([8.0, 9.0]),)]
    >>> df = spark.createDataFrame(data, ["features"])
    >>> km = LloydKMeans(k=2, initialCenters=[[0.0, 0.0], [9.0, 8.0]])
    >>> model = km.fit(df)
    >>> [c.tolist() for c in model.clusterCenters()]
    [[0.5, 0.5], [8.5, 8.5]]
    >>> model.summary.clusterSizes, model.summary.numIter, model.summary.converged
    ([2, 2], 2, True)
    >>> [(r.iteration, r.maxMove, r.clusterSizes) for r in model.summary.iterations]
    [(1, 0.7071067811865476, [2, 2]), (2, 0.0, [2, 2])]
    >>> model.predict(Vectors.dense([7.0, 7.0]))
    1
    >>> model.transform(df).select("prediction").collect()[2].prediction
    1
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "lloyd")
    >>> model.write().overwrite().save(path)
    >>> LloydKMeansModel.load(path).clusterCenters()[1].tolist()
    [8.5, 8.5]
    >>> km.write().overwrite().save(path + "-estimator")
    >>> LloydKMeans.load(path + "-estimator").getK()
    2
    """

    @keyword_only
    def __init__(
        self,
        *,
        featuresCol: str = "features",
        predictionCol: str = "prediction",
        k: int = 2,
        initMode: str = "k-means||",
        initSteps: int = 2,
        tol: float = 1e-4,
        maxIter: int = 20,
        seed: int | None = None,
        distanceMeasure: str = "euclidean",
        weightCol: str | None = None,
        initialCenters: Any = None,
        handleInvalid: str = "error",
    ) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        featuresCol: str = "features",
        predictionCol: str = "prediction",
        k: int = 2,
        initMode: str = "k-means||",
        initSteps: int = 2,
        tol: float = 1e-4,
        maxIter: int = 20,
        seed: int | None = None,
        distanceMeasure: str = "euclidean",
        weightCol: str | None = None,
        initialCenters: Any = None,
        handleInvalid: str = "error",
    ) -> LloydKMeans:
        """Sets params for LloydKMeans (only those passed; ``None`` leaves a param unset)."""
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None}
        return self._set(**kwargs)

    def setK(self, value: int) -> LloydKMeans:
        """Sets the value of :py:attr:`k`."""
        return self._set(k=value)

    def setInitMode(self, value: str) -> LloydKMeans:
        """Sets the value of :py:attr:`initMode`."""
        return self._set(initMode=value)

    def setInitSteps(self, value: int) -> LloydKMeans:
        """Sets the value of :py:attr:`initSteps`."""
        return self._set(initSteps=value)

    def setInitialCenters(self, value: Any) -> LloydKMeans:
        """Sets the value of :py:attr:`initialCenters` (k rows of numFeatures numbers)."""
        return self._set(initialCenters=value)

    def clearInitialCenters(self) -> LloydKMeans:
        """Unsets :py:attr:`initialCenters`, so that ``initMode`` chooses the centers."""
        self.clear(self.initialCenters)
        return self

    def setMaxIter(self, value: int) -> LloydKMeans:
        """Sets the value of :py:attr:`maxIter`."""
        return self._set(maxIter=value)

    def setTol(self, value: float) -> LloydKMeans:
        """Sets the value of :py:attr:`tol`."""
        return self._set(tol=value)

    def setSeed(self, value: int) -> LloydKMeans:
        """Sets the value of :py:attr:`seed`."""
        return self._set(seed=value)

    def setDistanceMeasure(self, value: str) -> LloydKMeans:
        """Sets the value of :py:attr:`distanceMeasure`."""
        return self._set(distanceMeasure=value)

    def setWeightCol(self, value: str) -> LloydKMeans:
        """Sets the value of :py:attr:`weightCol`."""
        return self._set(weightCol=value)

    def setFeaturesCol(self, value: str) -> LloydKMeans:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> LloydKMeans:
        """Sets the value of :py:attr:`predictionCol`."""
        return self._set(predictionCol=value)

    def setHandleInvalid(self, value: str) -> LloydKMeans:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def setIterationCallback(
        self, callback: _fit.IterationCallback | None
    ) -> LloydKMeans:
        """Follow a fit live: ``callback(record, centers)`` runs on the driver after every
        iteration, with its :class:`IterationRecord` and the updated centers (a k x d numpy
        array); ``None`` removes it. An exception from it stops the fit. Not a Param: kept
        by ``copy()`` (so a Pipeline or CrossValidator calls it too), not saved."""
        self._iteration_callback = callback
        return self

    def _config(self) -> _fit.FitConfig:
        return fit_config(self)

    def _fit(self, dataset: DataFrame) -> LloydKMeansModel:
        results = _backend(dataset).fit_many(
            dataset, [self._config()], [getattr(self, "_iteration_callback", None)])
        return self._model(_fit.only(results), dataset)

    def fitMultiple(
        self, dataset: DataFrame, paramMaps: Sequence[ParamMap]
    ) -> Iterator[tuple[int, LloydKMeansModel]]:
        """One model per param map, fitted together: the data is prepared once (per distinct
        featuresCol, weightCol, distanceMeasure and seed) and every model still iterating
        advances in the same passes over it. Each model equals ``fit(dataset, paramMap)``'s.

        The pyspark contract: an iterator of ``(index, model)``, safe to share between
        threads (``CrossValidator``, ``TrainValidationSplit`` and ``fit(dataset, [maps])``
        call it); every param map is checked first, the fits run on the first ``next``.

        >>> from sparkml_lloyd import LloydKMeans
        >>> from pyspark.ml.linalg import Vectors
        >>> df = spark.createDataFrame(
        ...     [(Vectors.dense([x]),) for x in (0., 1., 10., 11., 20., 21.)], ["features"])
        >>> km = LloydKMeans(seed=1)
        >>> models = dict(km.fitMultiple(df, [{km.k: 2}, {km.k: 3}]))
        >>> [len(models[i].clusterCenters()) for i in (0, 1)]
        [2, 3]
        >>> models[1].summary.trainingCost
        1.5
        """
        estimators = [self.copy(dict(m)) for m in paramMaps]
        cfgs = [e._config() for e in estimators]  # every param map checked before any job
        callbacks = [getattr(e, "_iteration_callback", None) for e in estimators]

        def fit_all() -> list[LloydKMeansModel | ValueError]:
            results = _multi.fit_groups(_backend(dataset).fit_many, dataset, cfgs, callbacks)
            return [r if isinstance(r, ValueError) else e._model(r, dataset)
                    for e, r in zip(estimators, results, strict=True)]

        return _multi.FitMultipleIterator(fit_all, len(estimators))

    def _model(self, result: _fit.FitResult, dataset: DataFrame) -> LloydKMeansModel:
        """The model of a fit's result, with this estimator's params and the summary."""
        model = LloydKMeansModel(result.centers)
        model._resetUid(self.uid)
        self._copyValues(model)
        model._summary = _summary.of_fit(
            result, lambda: model.transform(dataset), model.getPredictionCol(),
            model.getFeaturesCol(), self.getK())
        return model

    def write(self) -> AtomicWriter:
        """An :class:`MLWriter` that saves this estimator's params atomically."""
        return AtomicWriter(self)

    @classmethod
    def read(cls) -> CheckedReader[LloydKMeans]:
        """An :class:`MLReader` for a saved :class:`LloydKMeans`."""
        return CheckedReader(cls)


class LloydKMeansModel(_LloydKMeansParams, Model, MLWritable, MLReadable):
    """A fitted Lloyd k-means: the centers, and a Transformer adding a prediction column.

    ``transform`` adds ``predictionCol`` (IntegerType, replacing a column of that name) with
    the index of the nearest center. An invalid feature row (null, another number of
    features, NaN or infinite values, all zeros under cosine) raises when an action reaches
    it under ``handleInvalid="error"`` (the default), is dropped under ``"skip"`` and gets a
    null prediction under ``"keep"``; ``predict`` raises or returns None. In classic Spark
    the assignment runs in the JVM, through Spark's own ``KMeansModel`` holding these centers
    (built once and kept on this instance); for large models (``k x d >= 2500``, or
    ``k >= 75`` centers of ``d >= 5`` features; ``k x d >= 5000`` on pyspark 3.5 and 4.0),
    where BLAS beats Spark's row-by-row loop, and under Spark Connect,
    where there is no JVM to call, it runs this package's numpy kernel in an Arrow UDF. A
    column whose ML attribute metadata declares another vector length fails at
    ``transform``.

    Examples
    --------
    >>> import numpy as np
    >>> model = LloydKMeansModel(np.array([[0.0, 0.0], [10.0, 10.0]]))
    >>> model.numFeatures
    2
    >>> model.predict([9.0, 9.5])
    1
    >>> df = spark.createDataFrame([([1.0, 2.0],), ([8.0, 9.0],)], ["features"])
    >>> [r.prediction for r in model.transform(df).collect()]
    [0, 1]
    >>> bad = spark.createDataFrame([([1.0, 2.0],), ([float("nan"), 0.0],), (None,)],
    ...                             "features array<double>")
    >>> model.setHandleInvalid("keep")
    LloydKMeansModel...
    >>> [r.prediction for r in model.transform(bad).collect()]
    [0, None, None]
    >>> model.setHandleInvalid("skip").transform(bad).count()
    1
    """

    def __init__(self, clusterCenters: Any = None) -> None:
        super().__init__()
        self._centers = (
            None if clusterCenters is None
            else np.array([np.asarray(c, dtype=np.float64) for c in clusterCenters])
        )
        self._summary: LloydKMeansSummary | None = None
        #: Spark's model with these centers, kept for transform (py4j handles: a copy or a
        #: pickle starts afresh).
        self._predictor = _predict.Predictor()

    def _require_centers(self) -> np.ndarray:
        if self._centers is None:
            raise RuntimeError("This LloydKMeansModel has no centers; fit or load one.")
        return self._centers

    def clusterCenters(self) -> list[np.ndarray]:
        """The cluster centers, as a list of numpy arrays (like Spark's ``KMeansModel``)."""
        return [c.copy() for c in self._require_centers()]

    @property
    def numFeatures(self) -> int:
        """Number of features the model was fitted on."""
        return int(self._require_centers().shape[1])

    @property
    def hasSummary(self) -> bool:
        """Whether a training summary exists (True after ``fit``, False after ``load``)."""
        return self._summary is not None

    @property
    def summary(self) -> LloydKMeansSummary:
        """The training summary; raises RuntimeError when there is none."""
        if self._summary is None:
            raise RuntimeError(
                f"No training summary available for this {type(self).__name__}: summaries "
                "exist only on a model returned by fit, not on a loaded or copied one."
            )
        return self._summary

    def setFeaturesCol(self, value: str) -> LloydKMeansModel:
        """Sets the value of :py:attr:`featuresCol`."""
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> LloydKMeansModel:
        """Sets the value of :py:attr:`predictionCol`."""
        return self._set(predictionCol=value)

    def setHandleInvalid(self, value: str) -> LloydKMeansModel:
        """Sets the value of :py:attr:`handleInvalid`."""
        return self._set(handleInvalid=value)

    def predict(self, value: Vector | Any) -> int | None:
        """The index of the cluster nearest to one feature vector. An invalid vector raises
        a ``ValueError`` under ``handleInvalid="error"`` and gives None otherwise."""
        check(self, "handleInvalid")
        return _predict_arrow.predict_one(value, self._require_centers(),
                                          self.getDistanceMeasure(), self.getHandleInvalid())

    def _transform(self, dataset: DataFrame) -> DataFrame:
        check(self, "handleInvalid")
        return self._predictor.transform(
            dataset, self._require_centers(), self.getDistanceMeasure(), self.getFeaturesCol(),
            self.getPredictionCol(), self.getHandleInvalid())

    def toSparkModel(self) -> Any:
        """This model as Spark's own :class:`pyspark.ml.clustering.KMeansModel`.

        Same centers, distance measure and column params (use it from Scala, Spark Connect
        clients or PMML export). Its ``transform`` assigns as ours does (but for points
        within rounding of a tie: it falls back to exact distances where ours, like the
        fit, uses the expanded form), but an invalid row is an error there whatever
        ``handleInvalid`` says (except an infinite value, which gets some cluster), an
        existing ``predictionCol`` is an error instead of being replaced, and
        ``array<double>`` columns are accepted only when their type rules out null
        elements.
        """
        summary = self._summary
        return _predict.spark_model(
            self._require_centers(), self.getDistanceMeasure(), self.uid,
            {"featuresCol": self.getFeaturesCol(), "predictionCol": self.getPredictionCol()},
            summary.trainingCost if summary else 0.0, summary.numIter if summary else 0)

    def copy(self, extra: dict | None = None) -> LloydKMeansModel:
        """A copy with the same uid, centers and params (plus ``extra``); no summary. It
        shares the model's JVM assigner (built for these centers)."""
        that = super().copy(extra)
        that._summary = None
        # The same centers: the same JVM model (a CrossValidator transforms a copy per fold).
        that._predictor = self._predictor
        return that

    # -- persistence ---------------------------------------------------------------------

    def write(self) -> AtomicWriter:
        """An :class:`MLWriter` that saves params and centers atomically."""
        return _persistence.model_writer(self, self._require_centers())

    @classmethod
    def read(cls) -> CheckedReader[LloydKMeansModel]:
        """An :class:`MLReader` for a saved :class:`LloydKMeansModel`."""
        return _persistence.model_reader(cls)
