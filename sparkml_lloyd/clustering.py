"""``LloydKMeans`` (Estimator), ``LloydKMeansModel`` (Model) and ``LloydKMeansSummary``.

Thin classes: Params and their checks are in :mod:`sparkml_lloyd._params`, the Spark work in
:mod:`sparkml_lloyd._engine`, the numbers in :mod:`sparkml_lloyd._kernel`, saving and loading
in :mod:`sparkml_lloyd._persistence`.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.linalg import DenseVector, Vector, VectorUDT
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from sparkml_lloyd import _engine, _kernel
from sparkml_lloyd._params import _LloydKMeansParams, validate
from sparkml_lloyd._persistence import AtomicWriter, CheckedReader

__all__ = ["LloydKMeans", "LloydKMeansModel", "LloydKMeansSummary"]


class LloydKMeansSummary:
    """Training summary of a :class:`LloydKMeansModel` (fields of Spark's ``KMeansSummary``,
    plus ``costHistory``).

    ``trainingCost`` is measured against the *final* centers, so it equals the cost of
    ``model.transform`` on the training data. Spark's built-in reports the cost of its last
    assignment step, i.e. against the centers *before* the last update.
    """

    def __init__(
        self,
        predictions: DataFrame,
        predictionCol: str,
        featuresCol: str,
        k: int,
        numIter: int,
        trainingCost: float,
        clusterSizes: list[int],
        costHistory: list[float],
    ) -> None:
        self.predictions = predictions
        self.predictionCol = predictionCol
        self.featuresCol = featuresCol
        self.k = k
        self.numIter = numIter
        self.trainingCost = trainingCost
        self.clusterSizes = clusterSizes
        #: ``costHistory[i]`` is the cost of the centers after ``i`` updates:
        #: ``[0]`` the initial centers, ``[-1]`` the final ones (``== trainingCost``).
        self.costHistory = costHistory

    @property
    def cluster(self) -> DataFrame:
        """The predicted cluster of every training row."""
        return self.predictions.select(self.predictionCol)

    def __repr__(self) -> str:
        return (
            f"LloydKMeansSummary(k={self.k}, numIter={self.numIter}, "
            f"trainingCost={self.trainingCost:.6g}, clusterSizes={self.clusterSizes})"
        )


class LloydKMeans(_LloydKMeansParams, Estimator["LloydKMeansModel"], MLWritable, MLReadable):
    """Lloyd's k-means on Spark with vectorised numpy partitions.

    Params, defaults and behaviour follow :class:`pyspark.ml.clustering.KMeans`; in addition
    ``initialCenters`` fixes the starting centers, and the summary has ``costHistory``.

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
    >>> model.summary.clusterSizes, model.summary.numIter
    ([2, 2], 2)
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

    def _config(self) -> _engine.FitConfig:
        initial = validate(self)
        return _engine.FitConfig(
            k=self.getK(),
            max_iter=self.getMaxIter(),
            tol=self.getTol(),
            seed=self.getSeed(),
            init_mode=self.getInitMode(),
            init_steps=self.getInitSteps(),
            distance=self.getDistanceMeasure(),
            features_col=self.getFeaturesCol(),
            weight_col=self.getOrDefault(self.weightCol) if self.isDefined(self.weightCol)
            else None,
            initial_centers=initial,
        )

    def _fit(self, dataset: DataFrame) -> LloydKMeansModel:
        result = _engine.fit(dataset, self._config())
        model = LloydKMeansModel(result.centers)
        model._resetUid(self.uid)
        self._copyValues(model)
        model._summary = LloydKMeansSummary(
            predictions=model.transform(dataset),
            predictionCol=model.getPredictionCol(),
            featuresCol=model.getFeaturesCol(),
            k=self.getK(),
            numIter=result.num_iter,
            trainingCost=result.training_cost,
            clusterSizes=result.cluster_sizes,
            costHistory=result.cost_history,
        )
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
    the index of the nearest center; a null feature row gets a null prediction. In classic
    Spark the assignment runs in the JVM, through Spark's own ``KMeansModel`` holding these
    centers (built once and kept on this instance); for large models (``k x d >= 2500``),
    where BLAS beats Spark's row-by-row loop, and under Spark Connect, where there is no
    JVM to call, it runs this package's numpy kernel in an Arrow UDF. A vector length that
    differs from the model's fails at ``transform`` when the column's ML attribute metadata
    declares it, otherwise when an action runs the assignment (Spark's own error).

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
    """

    def __init__(self, clusterCenters: Any = None) -> None:
        super().__init__()
        self._centers = (
            None if clusterCenters is None
            else np.array([np.asarray(c, dtype=np.float64) for c in clusterCenters])
        )
        self._summary: LloydKMeansSummary | None = None
        #: Spark's mllib KMeansModel with these centers (a py4j object) and what it was built
        #: for: (weakref to the SparkContext, distance measure, centers array, JVM model,
        #: the JvmAssigner around it).
        self._jvm_model: tuple[Any, str, np.ndarray, Any, Any] | None = None

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

    def predict(self, value: Vector | Any) -> int:
        """The index of the cluster nearest to one feature vector."""
        centers = self._require_centers()
        x = value.toArray() if isinstance(value, Vector) else np.asarray(value, np.float64)
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        if x.shape[1] != centers.shape[1]:
            raise ValueError(
                f"The vector has length {x.shape[1]} but the model was fitted on "
                f"{centers.shape[1]} features; give a vector of {centers.shape[1]} numbers."
            )
        if not np.isfinite(x).all():
            raise ValueError("The vector contains NaN or infinite values; give finite numbers.")
        distance = self.getDistanceMeasure()
        labels, _ = _kernel.nearest(x, _engine.unit_centers(centers, distance), distance)
        return int(labels[0])

    def _transform(self, dataset: DataFrame) -> DataFrame:
        centers = self._require_centers()
        features_col, prediction_col = self.getFeaturesCol(), self.getPredictionCol()
        kind = _engine.check_prediction_input(dataset, features_col, centers.shape[1])
        col = None
        if not _engine.use_arrow_path(centers):  # classic Spark, small k x d: Spark's UDF
            col = self._jvm_assigner(dataset.sparkSession.sparkContext).prediction(
                dataset, features_col, kind, prediction_col)
        if col is None:  # Spark Connect, a large k x d, or no UDF to take: numpy kernel
            col = _engine.prediction_column(
                dataset, features_col, centers, self.getDistanceMeasure()
            ).alias(prediction_col, metadata=_engine.prediction_metadata(centers.shape[0]))
        return dataset.withColumn(prediction_col, col)

    def _mllib_model(self, sc: Any) -> Any:
        """Spark's mllib KMeansModel with our centers, built once per SparkContext, distance
        measure and centers array, and kept on this instance (``copy`` drops it)."""
        centers, distance = self._require_centers(), self.getDistanceMeasure()
        cached = getattr(self, "_jvm_model", None)  # None too after an older pickle
        if (cached is not None and cached[0]() is sc and cached[1] == distance
                and cached[2] is centers):
            return cached[3]
        jmodel = _engine.mllib_kmeans_model(sc, centers, distance)
        assigner = _engine.JvmAssigner(jmodel, self.uid, centers.shape[0])
        self._jvm_model = (weakref.ref(sc), distance, centers, jmodel, assigner)
        return jmodel

    def _jvm_assigner(self, sc: Any) -> Any:
        """The :class:`_engine.JvmAssigner` around :meth:`_mllib_model` (cached with it)."""
        self._mllib_model(sc)
        assert self._jvm_model is not None
        return self._jvm_model[4]

    def __getstate__(self) -> dict[str, Any]:
        # The cached JVM model is a py4j handle: neither picklable nor worth copying.
        state = self.__dict__.copy()
        state["_jvm_model"] = None
        return state

    def toSparkModel(self) -> Any:
        """This model as Spark's own :class:`pyspark.ml.clustering.KMeansModel`.

        Same centers, distance measure and column params (use it from Scala, Spark Connect
        clients or PMML export). Its ``transform`` assigns exactly as ours does in classic
        Spark, but a null feature vector is an error there, not null, an existing
        ``predictionCol`` is an error instead of being replaced, and ``array<double>``
        columns are accepted only when their type rules out null elements.
        """
        centers = self._require_centers()
        summary = self._summary
        spark_model = _engine.spark_kmeans_model(
            centers, self.getDistanceMeasure(),
            summary.trainingCost if summary else 0.0, summary.numIter if summary else 0,
            self.uid,
        )
        spark_model._set(k=len(centers), featuresCol=self.getFeaturesCol(),
                         predictionCol=self.getPredictionCol(),
                         distanceMeasure=self.getDistanceMeasure())
        spark_model._transfer_params_to_java()
        return spark_model

    def copy(self, extra: dict | None = None) -> LloydKMeansModel:
        """A copy with the same uid, centers and params (plus ``extra``); no summary."""
        that = super().copy(extra)
        that._summary = None
        that._jvm_model = None
        return that

    # -- persistence ---------------------------------------------------------------------

    def write(self) -> AtomicWriter:
        """An :class:`MLWriter` that saves params and centers atomically."""
        return AtomicWriter(
            self,
            write_data=_write_centers,
            extra_metadata=lambda m: {"numFeatures": m.numFeatures,
                                      "numClusters": len(m._require_centers())},
        )

    @classmethod
    def read(cls) -> CheckedReader[LloydKMeansModel]:
        """An :class:`MLReader` for a saved :class:`LloydKMeansModel`."""
        return CheckedReader(cls, read_data=_read_centers)


_DATA_SCHEMA = T.StructType(
    [T.StructField("clusterIdx", T.IntegerType()), T.StructField("clusterCenter", VectorUDT())]
)


def _write_centers(model: LloydKMeansModel, path: str, spark: SparkSession) -> None:
    rows = [(i, DenseVector(c)) for i, c in enumerate(model._require_centers())]
    spark.createDataFrame(rows, _DATA_SCHEMA).coalesce(1).write.parquet(path)


def _read_centers(
    model: LloydKMeansModel, path: str, spark: SparkSession, metadata: dict[str, Any]
) -> None:
    try:
        rows = spark.read.parquet(path).collect()
    except Exception as e:  # an emptied or corrupted data folder
        raise ValueError(
            f"Cannot load LloydKMeansModel: the data under {path!r} is unreadable "
            f"({type(e).__name__}). Save the model again."
        ) from None
    expected = metadata.get("numClusters")
    rows = sorted(rows, key=lambda r: r.clusterIdx)
    if not rows or (expected is not None and len(rows) != expected) or [
        r.clusterIdx for r in rows
    ] != list(range(len(rows))):
        raise ValueError(
            f"Cannot load LloydKMeansModel: {path!r} holds {len(rows)} centers but the "
            f"metadata says {expected}; the saved model is incomplete. Save it again."
        )
    lengths = {r.clusterCenter.size for r in rows}
    features = metadata.get("numFeatures")
    if len(lengths) != 1 or (features is not None and lengths != {features}):
        raise ValueError(
            f"Cannot load LloydKMeansModel: {path!r} holds centers of length(s) "
            f"{sorted(lengths)} but the metadata says numFeatures={features}; the saved "
            "model is inconsistent. Save it again."
        )
    model._centers = np.array([r.clusterCenter.toArray() for r in rows])

