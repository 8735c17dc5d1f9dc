"""Synthetic text-like sparse data: hashed word counts of documents on ``k`` topics, generated
on the executors and cached as a ``features`` column of ``SparseVector`` s.

The data of a sparse cell ``(n, d, k, nnz)`` is a pure function of ``(seed, n, d, nnz, k)``,
drawn in the same fixed chunks as the dense blobs (:func:`benchmarks.datagen.num_chunks`),
chunk ``i`` by ``numpy.random.default_rng([seed, n, d, nnz, k, i])``. The driver sends only the
small vocabulary tables (:class:`Vocabulary`: a few hundred kB); the rows are drawn inside
``mapInArrow`` from ``spark.range(num_chunks)`` and leave it as the stored struct of Spark's
``VectorUDT`` (type, size, indices, values), so nothing of size ``n`` exists on the driver and
no row is ever dense.

A document. Its topic is uniform over ``k``; its length (tokens) is Poisson. Each token is,
with probability :data:`TOPIC_SHARE`, a word of its topic's vocabulary (:data:`TOPIC_WORDS`
words, Zipf-weighted), else a background word (Zipf over all :data:`WORDS` words). Words are
hashed to ``d`` features by a fixed random map (collisions included, as with ``HashingTF``),
and a feature's value is the number of tokens that hit it (a term count) times a weight drawn
per entry from ``[0.5, 1.5)``. The mean length is chosen so that the expected number of
distinct features a document hits is ``nnz``.

Why not plain counts: with integer values many distances tie exactly (a document sharing no
word with two centers of equal squared norm is as far from both), and implementations break
such ties differently by rounding (MLlib computes ``|c|^2`` from a square root): at smoke size
MLlib's centers differed from ours by 3e-3 after one iteration, scikit-learn's by 1e-17. The
weights make exact ties as unlikely as with the blobs. (Not idf weights: on unnormalized
tf-idf rows the first ``k`` documents, rich in rare words, are far from everything, every
document joins the center of smallest norm, and Lloyd stops within a few iterations with one
cluster of nearly all documents.)

Overlap. Only :data:`TOPIC_SHARE` of a document's tokens come from its topic, and the common
background words are shared by all, so the topics overlap heavily: Lloyd's algorithm from the
first ``k`` documents keeps moving documents between clusters for many iterations. With
scikit-learn (seed 42, ``tol=0``) it converged after 93 iterations at (1e5, 2^18, 20, 30) and
20 at the smoke cell (1e4, 2^14, 4, 20), and had not after 12 at (2e5, 2^18, 100, 30): more
than the benchmark's ``m2`` (12, 3 and 6), so ``T(m2) - T(m1)`` measures full iterations (the
result table checks it). No cluster empties in those iterations (where one would, MLlib and
ours keep its center, scikit-learn moves it, and their centers would differ).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from benchmarks.datagen import chunk_bounds, num_chunks
from benchmarks.grid import Cell

#: Size of the word universe (before hashing to ``d`` features).
WORDS = 100_000
#: Words in each topic's vocabulary.
TOPIC_WORDS = 200
#: Share of a document's tokens drawn from its topic (the rest: background words).
TOPIC_SHARE = 0.15
#: Zipf exponent of word frequencies (background and within a topic).
ZIPF = 1.0
#: The most common background words are in no topic vocabulary (function words).
COMMON_WORDS = 100


@dataclass(frozen=True)
class Vocabulary:
    """The tables every chunk draws from (a pure function of seed, d, k and nnz)."""

    #: feature index of every word (the hash of the word)
    feature_of_word: np.ndarray
    #: cumulative background word probabilities (Zipf over all words)
    background_cdf: np.ndarray
    #: ``k x TOPIC_WORDS`` word ids of every topic's vocabulary
    topic_words: np.ndarray
    #: cumulative probabilities over a topic's vocabulary (Zipf, same for every topic)
    topic_cdf: np.ndarray
    #: mean tokens per document
    mean_tokens: float


def _zipf(size: int) -> np.ndarray:
    p = 1.0 / np.arange(1, size + 1) ** ZIPF
    return p / p.sum()


def _tokens_for_distinct(p: np.ndarray, nnz: int) -> float:
    """Mean length at which a document whose tokens follow ``p`` hits ``nnz`` distinct words
    on average (``sum_w 1 - (1 - p_w)^L = nnz``, by bisection)."""
    lo, hi = float(nnz), float(nnz) * 4
    for _ in range(50):
        mid = (lo + hi) / 2
        if np.sum(-np.expm1(mid * np.log1p(-p))) < nnz:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def vocabulary(cell: Cell, seed: int) -> Vocabulary:
    """The vocabulary tables of a sparse cell."""
    if cell.nnz is None:
        raise ValueError(f"{cell} is not a sparse cell")
    rng = np.random.default_rng([seed, cell.d, cell.k, cell.nnz, 0x7E47])
    feature_of_word = rng.integers(0, cell.d, size=WORDS).astype(np.int32)
    background = _zipf(WORDS)
    topic_words = np.stack([
        rng.choice(np.arange(COMMON_WORDS, WORDS), size=TOPIC_WORDS, replace=False)
        for _ in range(cell.k)
    ])
    topic = _zipf(TOPIC_WORDS)
    # a document's word distribution (topic 0; the topics differ only by their words)
    p = (1 - TOPIC_SHARE) * background
    np.add.at(p, topic_words[0], TOPIC_SHARE * topic)
    return Vocabulary(feature_of_word, np.cumsum(background), topic_words, np.cumsum(topic),
                      _tokens_for_distinct(p, cell.nnz))


def generate_chunk(cell: Cell, seed: int, vocab: Vocabulary, i: int) -> sp.csr_array:
    """The documents of chunk ``i`` as a canonical CSR matrix (sorted int32 indices, float64
    term counts)."""
    chunks = num_chunks(cell.n)
    start, stop = chunk_bounds(cell.n, chunks, i)
    rows = stop - start
    rng = np.random.default_rng([seed, cell.n, cell.d, cell.nnz, cell.k, i])
    topics = rng.integers(0, cell.k, size=rows)
    lengths = np.maximum(rng.poisson(vocab.mean_tokens, size=rows), 1)
    doc = np.repeat(np.arange(rows), lengths)
    tokens = len(doc)
    from_topic = rng.random(tokens) < TOPIC_SHARE
    u = rng.random(tokens)
    words = np.searchsorted(vocab.background_cdf, u * vocab.background_cdf[-1])
    rank = np.searchsorted(vocab.topic_cdf, u[from_topic] * vocab.topic_cdf[-1])
    words[from_topic] = vocab.topic_words[topics[doc[from_topic]], rank]
    features = vocab.feature_of_word[np.minimum(words, WORDS - 1)]
    counts = sp.coo_array((np.ones(tokens), (doc, features)), shape=(rows, cell.d)).tocsr()
    counts.sum_duplicates()
    counts.sort_indices()
    weights = rng.uniform(0.5, 1.5, size=counts.nnz)
    return sp.csr_array((counts.data * weights, counts.indices.astype(np.int32),
                         counts.indptr.astype(np.int32)), shape=(rows, cell.d))


def initial_centers(cell: Cell, seed: int, vocab: Vocabulary | None = None) -> sp.csr_array:
    """``C0``: the first ``k`` documents (as for the blobs), sparse; computed on the driver."""
    vocab = vocab or vocabulary(cell, seed)
    return generate_chunk(cell, seed, vocab, 0)[: cell.k]


#: Spark's storage struct of ``VectorUDT``: type 0 is sparse.
_VECTOR_STRUCT = pa.struct([("type", pa.int8()), ("size", pa.int32()),
                            ("indices", pa.list_(pa.int32())),
                            ("values", pa.list_(pa.float64()))])


def _csr_to_batch(x: sp.csr_array) -> pa.RecordBatch:
    rows, d = x.shape
    offsets = pa.array(x.indptr.astype(np.int32))
    vectors = pa.StructArray.from_arrays(
        [pa.array(np.zeros(rows, dtype=np.int8)), pa.array(np.full(rows, d, dtype=np.int32)),
         pa.ListArray.from_arrays(offsets, pa.array(x.indices)),
         pa.ListArray.from_arrays(offsets, pa.array(x.data))],
        fields=list(_VECTOR_STRUCT))
    return pa.RecordBatch.from_arrays([vectors], ["features"])


def _generate_partition(batches: Iterator[pa.RecordBatch], cell: Cell, seed: int,
                        vocab: Vocabulary) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: chunk ids in, one Arrow batch of sparse vectors per chunk out."""
    for batch in batches:
        for i in batch.column(0).to_numpy(zero_copy_only=False):
            yield _csr_to_batch(generate_chunk(cell, seed, vocab, int(i)))


@dataclass
class TextData:
    """A generated, cached and counted sparse cell (the same protocol as the blobs)."""

    cell: Cell
    df: DataFrame
    #: The initial centers every C0-started competitor is given (dense ``k x d``).
    c0: np.ndarray
    #: ... and as the sparse documents they are.
    c0_sparse: sp.csr_array
    #: Seconds to generate, cache and count it.
    seconds: float
    #: Stored entries (non-zeros) of all rows.
    nnz: int

    @property
    def nonzero_bytes(self) -> int:
        """The data's non-zero storage as CSR: 8-byte values, 4-byte indices and row
        pointers (``12 * nnz + 4 * (n + 1)``)."""
        return 12 * self.nnz + 4 * (self.cell.n + 1)

    def facts(self) -> dict[str, float]:
        """Shape of the data, for the record."""
        n, d = self.cell.n, self.cell.d
        return {"nnz": self.nnz, "nnz_per_row": self.nnz / n, "density": self.nnz / (n * d),
                "nonzero_bytes": self.nonzero_bytes}

    def unpersist(self) -> None:
        self.df.unpersist(blocking=True)


def generate(spark: SparkSession, cell: Cell, seed: int, partitions: int) -> TextData:
    """Generate the cell on the executors, cache it, count its rows and non-zeros."""
    t0 = time.perf_counter()
    vocab = vocabulary(cell, seed)
    body = partial(_generate_partition, cell=cell, seed=seed, vocab=vocab)
    schema = T.StructType([T.StructField("features", VectorUDT())])
    df = (spark.range(0, num_chunks(cell.n), 1, numPartitions=partitions)
          .mapInArrow(body, schema).cache())
    stored = F.unwrap_udt(F.col("features"))
    row = df.agg(F.count(F.lit(1)).alias("rows"),
                 F.sum(F.size(stored.getField("indices"))).alias("nnz")).first()
    if row is None or row["rows"] != cell.n:
        df.unpersist()
        raise RuntimeError(f"generated {row and row['rows']} rows for {cell}, "
                           f"expected {cell.n}")
    c0 = initial_centers(cell, seed, vocab)
    return TextData(cell, df, c0.toarray(), c0, time.perf_counter() - t0, int(row["nnz"]))


def collect_csr(df: DataFrame, d: int) -> sp.csr_array:
    """The ``features`` column (sparse vectors of size ``d``) as an ``(n, d)`` CSR matrix on
    the driver, via Arrow and the vectors' stored struct (never dense)."""
    from sparkml_lloyd._compat import to_arrow  # DataFrame.toArrow is pyspark 4 only

    stored = F.unwrap_udt(F.col("features"))
    table = to_arrow(df.select(stored.getField("indices").alias("i"),
                               stored.getField("values").alias("v")))
    idx = table.column("i").combine_chunks()
    val = table.column("v").combine_chunks()
    offsets = idx.offsets.to_numpy()
    indptr = (offsets - offsets[0]).astype(np.int32)
    return sp.csr_array((np.asarray(val.flatten().to_numpy(zero_copy_only=False),
                                    dtype=np.float64),
                         np.asarray(idx.flatten().to_numpy(zero_copy_only=False),
                                    dtype=np.int32), indptr), shape=(len(idx), d))


def describe() -> str:
    """How the documents of a sparse cell ``(n, d, k, nnz)`` are made (for the page)."""
    return (f"hashed, weighted term counts of n documents on k topics: {TOPIC_SHARE:.0%} of a "
            f"document's tokens from its topic's {TOPIC_WORDS} words, the rest from "
            f"{WORDS:,} background words (Zipf), hashed to d features, ~nnz distinct "
            "features a document")
