"""Sparse features stay sparse: CSR blocks, the same centers as scikit-learn on the same CSR
matrix and as Spark MLlib, small blocks, no densifying, and a clear error (not a dead
session) for a fit too large for memory."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from pyspark.ml.feature import HashingTF, OneHotEncoder, Tokenizer, VectorAssembler
from pyspark.ml.linalg import DenseVector, SparseVector, VectorUDT
from pyspark.mllib.clustering import KMeans as MLlibKMeans
from pyspark.mllib.clustering import KMeansModel as MLlibKMeansModel
from pyspark.mllib.linalg import SparseVector as MLlibSparseVector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from sklearn.cluster import KMeans as SkKMeans

from sparkml_lloyd import LloydKMeans, _blockstore
from tests.helpers import relative_difference
from tests.leaks import jobs_started, jvm_pid

TEXT_D = 2**18


def text_like(n: int, d: int = TEXT_D, k: int = 6, nnz: int = 30,
              seed: int = 0) -> sp.csr_array:
    """Documents of ``k`` topics: 10 words of the topic's vocabulary and ``nnz - 10`` words
    from all ``d`` (as hashed term frequencies: about ``nnz`` non-zeros a row)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic = i % k
        base = topic * 997 % (d - 40)
        words = np.concatenate([base + rng.choice(40, 10), rng.choice(d, nnz - 10)])
        cols, counts = np.unique(words, return_counts=True)
        rows.append((cols, counts * rng.uniform(0.5, 1.5, len(cols))))
    indptr = np.concatenate([[0], np.cumsum([len(c) for c, _ in rows])]).astype(np.int32)
    return sp.csr_array((np.concatenate([v for _, v in rows]),
                         np.concatenate([c for c, _ in rows]).astype(np.int32), indptr),
                        shape=(n, d))


def frame(spark: SparkSession, x: sp.csr_array, partitions: int = 2,
          dense_every: int = 0) -> DataFrame:
    """A ``features`` vector column of the rows of ``x`` (every ``dense_every``-th as a
    DenseVector, the others sparse), and ``id``."""
    rows = []
    for i in range(x.shape[0]):
        a, b = x.indptr[i], x.indptr[i + 1]
        if dense_every and i % dense_every == 0:
            v = DenseVector(x[[i]].toarray()[0])
        else:
            v = SparseVector(x.shape[1], x.indices[a:b].tolist(), x.data[a:b].tolist())
        rows.append((i, v))
    schema = T.StructType([T.StructField("id", T.IntegerType()),
                           T.StructField("features", VectorUDT())])
    return spark.createDataFrame(rows, schema).repartition(partitions)


def mllib_fit(spark: SparkSession, x: sp.csr_array, c0: np.ndarray, max_iter: int,
              distance: str) -> np.ndarray:
    vectors = [MLlibSparseVector(x.shape[1], x.indices[a:b].tolist(), x.data[a:b].tolist())
               for a, b in zip(x.indptr[:-1], x.indptr[1:], strict=True)]
    model = MLlibKMeans.train(spark.sparkContext.parallelize(vectors, 2), c0.shape[0],
                              maxIterations=max_iter, initialModel=MLlibKMeansModel(list(c0)),
                              epsilon=0.0, distanceMeasure=distance)
    return np.array(model.clusterCenters)


@pytest.fixture(scope="module")
def text(spark):
    x = text_like(800)
    return x, frame(spark, x).cache()


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_text_like_data_same_centers_as_scikit_learn_and_mllib(spark, text, distance):
    x, df = text
    c0 = x[[0, 1, 2, 3, 4, 5]].toarray()
    ours = LloydKMeans(k=6, initialCenters=c0, maxIter=8, tol=0.0,
                       distanceMeasure=distance).fit(df)
    mllib = mllib_fit(spark, x, c0, 8, distance)
    assert relative_difference(ours.clusterCenters(), mllib) <= 1e-9
    if distance == "euclidean":
        sk = SkKMeans(n_clusters=6, init=c0, n_init=1, max_iter=8, tol=0.0,
                      algorithm="lloyd").fit(x)
        assert relative_difference(ours.clusterCenters(), sk.cluster_centers_) <= 1e-9
        assert ours.summary.numIter == sk.n_iter_
        assert ours.summary.trainingCost == pytest.approx(sk.inertia_, rel=1e-9)


def test_one_hot_data_same_centers_as_scikit_learn_and_mllib(spark):
    rng = np.random.default_rng(4)
    levels = (3, 7, 12, 25)
    codes = np.stack([rng.integers(0, m, 1200) for m in levels], axis=1).astype(float)
    raw = spark.createDataFrame(codes.tolist(), [f"c{j}" for j in range(len(levels))])
    onehot = OneHotEncoder(inputCols=raw.columns, outputCols=[f"o{j}" for j in range(4)],
                           dropLast=False).fit(raw)
    df = VectorAssembler(inputCols=[f"o{j}" for j in range(4)], outputCol="features") \
        .transform(onehot.transform(raw))
    offsets = np.concatenate([[0], np.cumsum(levels)[:-1]])
    x = sp.csr_array((np.ones(codes.size), (np.repeat(np.arange(len(codes)), len(levels)),
                                            (codes + offsets).astype(int).ravel())),
                     shape=(len(codes), sum(levels)))
    x = sp.csr_array((x.data, x.indices.astype(np.int32), x.indptr.astype(np.int32)),
                     shape=x.shape)
    stored = df.select("features").collect()
    assert isinstance(stored[0].features, SparseVector)
    np.testing.assert_array_equal(np.array([r.features.toArray() for r in stored]),
                                  x.toarray())
    c0 = x[[0, 5, 17, 40, 99]].toarray()
    ours = LloydKMeans(k=5, initialCenters=c0, maxIter=10, tol=0.0).fit(df)
    sk = SkKMeans(n_clusters=5, init=c0, n_init=1, max_iter=10, tol=0.0,
                  algorithm="lloyd").fit(x)
    assert relative_difference(ours.clusterCenters(), sk.cluster_centers_) <= 1e-9
    assert ours.summary.numIter == sk.n_iter_
    assert relative_difference(ours.clusterCenters(), mllib_fit(spark, x, c0, 10,
                                                               "euclidean")) <= 1e-9


@pytest.mark.parametrize("init", ["k-means||", "random"])
def test_the_result_does_not_depend_on_partitioning(spark, text, init):
    x, _ = text
    fits = [LloydKMeans(k=6, seed=11, initMode=init, maxIter=6).fit(frame(spark, x, p))
            for p in (1, 3)]
    assert relative_difference(fits[0].clusterCenters(), fits[1].clusterCenters()) <= 1e-9
    assert fits[0].summary.numIter == fits[1].summary.numIter


def test_mixed_dense_and_sparse_rows_in_one_column(spark):
    x = text_like(600, d=300, nnz=12, seed=2)
    c0 = x[[0, 1, 2, 3, 4, 5]].toarray()
    sk = SkKMeans(n_clusters=6, init=c0, n_init=1, max_iter=6, tol=0.0,
                  algorithm="lloyd").fit(x.toarray())
    for dense_every in (2, 1):  # half the rows dense; then all of them
        df = frame(spark, x, dense_every=dense_every)
        ours = LloydKMeans(k=6, initialCenters=c0, maxIter=6, tol=0.0).fit(df)
        assert relative_difference(ours.clusterCenters(), sk.cluster_centers_) <= 1e-9


def test_sparse_blocks_take_their_non_zero_storage_and_nothing_is_densified(spark):
    """d = 2^20: the rows densified would take 2000 x 2^20 x 8 bytes = 16 GiB. The block
    files, looked at during the fit, take at most 1.3x the rows' CSR storage: 8 bytes a value,
    4 an index, 4 a row pointer."""
    d = 2**20
    x = text_like(2000, d=d, nnz=30, seed=5)
    df = frame(spark, x)
    seen: list[int] = []

    def measure(record, centers):
        if record.iteration == 1:
            files = _blockstore.block_files({jvm_pid(spark)})
            seen.append(sum(os.path.getsize(f) for f in files))

    for init in ("k-means||", "random"):
        seen.clear()
        model = LloydKMeans(k=4, seed=1, initMode=init, maxIter=3).setIterationCallback(
            measure).fit(df)
        assert model.numFeatures == d and sum(model.summary.clusterSizes) == 2000
        csr_bytes = 12 * x.nnz + 4 * (x.shape[0] + 1)
        assert 0 < seen[0] <= 1.3 * csr_bytes, (seen, csr_bytes)


def test_a_fit_too_large_for_memory_is_a_clear_error_and_the_session_lives_on(spark):
    """k = 50 centers of 2^30 features would take 400 GiB: a ValueError naming the figure and
    the way out, before any job when the column's metadata declares its size (HashingTF's
    does), else after the preparation pass; the session answers and no block file is left."""
    docs = spark.createDataFrame([("spark sparse text",), ("sparse vectors stay",)], ["text"])
    words = Tokenizer(inputCol="text", outputCol="words").transform(docs)
    hashed = HashingTF(inputCol="words", outputCol="features", numFeatures=2**30).transform(words)
    jobs = jobs_started(spark)
    with pytest.raises(ValueError, match=r"k=50 centers of 1073741824 features take 400.0 GiB"
                       r".*smaller numFeatures for HashingTF.*smaller k"):
        LloydKMeans(k=50).fit(hashed)
    assert jobs_started(spark) == jobs
    undeclared = frame(spark, sp.csr_array(([1.0, 2.0], ([0, 1], [3, 2**30 - 1])),
                                           shape=(2, 2**30)), partitions=1)
    with pytest.raises(ValueError, match=r"more than the .* it can use there"):
        LloydKMeans(k=50).fit(undeclared)
    assert spark.range(3).count() == 3
    assert _blockstore.block_files({jvm_pid(spark)}) == []


@pytest.mark.parametrize("k", [3, 6])  # k x d below and above the JVM path's limit
def test_transform_and_predict_on_sparse_rows_equal_sparks_model(spark, text, k):
    x, df = text
    d = 40 if k == 3 else TEXT_D
    rows = x[:, :d] if d < TEXT_D else x
    data = frame(spark, sp.csr_array(rows), partitions=2) if d < TEXT_D else df
    centers = rows[list(range(k))].toarray() + 0.1
    from sparkml_lloyd import LloydKMeansModel

    model = LloydKMeansModel(centers).setHandleInvalid("keep")
    ours = {r.id: r.prediction for r in model.transform(data).collect()}
    spark_model = model.toSparkModel()
    theirs = {r.id: r.prediction for r in spark_model.transform(data).collect()}
    assert ours == theirs and len(set(ours.values())) > 1
    vector = data.orderBy("id").first().features
    assert model.predict(vector) == spark_model.predict(vector) == ours[0]
