"""The numpy kernel on CSR blocks (no Spark): the same numbers as on the dense rows, and
scikit-learn's Lloyd on the same CSR matrix."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans as SkKMeans

from sparkml_lloyd import _kernel as K
from sparkml_lloyd import _seeding as S


def sparse_rows(n=600, d=300, nnz=8, seed=0):
    """Text-like rows: ``nnz`` non-zeros per row at random columns, positive values."""
    rng = np.random.default_rng(seed)
    cols = np.stack([rng.choice(d, nnz, replace=False) for _ in range(n)])
    cols.sort(axis=1)
    vals = rng.uniform(0.5, 3.0, size=(n, nnz))
    indptr = np.arange(0, n * nnz + 1, nnz, dtype=np.int32)
    return sp.csr_array((vals.ravel(), cols.ravel().astype(np.int32), indptr), shape=(n, d))


@pytest.mark.parametrize("distance", [K.EUCLIDEAN, K.COSINE])
@pytest.mark.parametrize("weighted", [False, True])
def test_block_stats_on_csr_equal_those_on_the_dense_rows(monkeypatch, distance, weighted):
    monkeypatch.setattr(K, "CHUNK_ROWS", 97)
    x = sparse_rows()
    dense = x.toarray()
    rng = np.random.default_rng(1)
    centers = dense[rng.choice(x.shape[0], 7, replace=False)] + 0.01
    if distance == K.COSINE:
        x, dense, centers = K.normalize_rows(x), K.normalize_rows(dense), K.normalize_rows(centers)
    w = rng.uniform(0.1, 2.0, x.shape[0]) if weighted else None
    ours, ref = K.block_stats(x, w, centers, distance), K.block_stats(dense, w, centers, distance)
    assert sp.issparse(ours.sums)
    np.testing.assert_allclose(ours.sums.toarray(), ref.sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours.counts, ref.counts)
    np.testing.assert_allclose(ours.weights, ref.weights, rtol=1e-13)
    assert ours.cost == pytest.approx(ref.cost, rel=1e-12)
    labels, dist = K.nearest(x, centers, distance)
    ref_labels, ref_dist = K.nearest(dense, centers, distance)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10, atol=1e-12)


def test_merged_sparse_sums_equal_the_dense_merge():
    """A partition's merged sums stay sparse while mostly empty, and become dense k x d when
    most entries are filled (then 8 bytes an entry beat 12 a non-zero)."""
    full = sparse_rows(n=2000, d=20, nnz=5)
    filled = K.merge_stats([K.block_stats(full, None, full[:3].toarray())], 3, 20, dense=False)
    assert isinstance(filled.sums, np.ndarray)
    x = sparse_rows(n=300, d=3000)
    centers = x[:5].toarray()
    parts = [K.block_stats(x[a:b], None, centers) for a, b in [(0, 100), (100, 180), (180, 300)]]
    dense_parts = [K.block_stats(x[a:b].toarray(), None, centers)
                   for a, b in [(0, 100), (100, 180), (180, 300)]]
    sparse_total = K.merge_stats(parts, 5, x.shape[1], dense=False)
    assert sp.issparse(sparse_total.sums)
    dense_total = K.merge_stats(parts, 5, x.shape[1])
    reference = K.merge_stats(dense_parts, 5, x.shape[1])
    np.testing.assert_allclose(dense_total.sums, reference.sums, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sparse_total.sums.toarray(), reference.sums, rtol=1e-13,
                               atol=1e-13)
    mixed = K.merge_stats([parts[0], dense_parts[1], parts[2]], 5, x.shape[1], dense=False)
    assert isinstance(mixed.sums, np.ndarray)
    np.testing.assert_allclose(mixed.sums, reference.sums, rtol=1e-13, atol=1e-13)


def test_lloyd_on_csr_equals_scikit_learn_on_the_same_csr_matrix():
    x = sparse_rows(n=800, d=500, nnz=12, seed=3)
    c0 = x[:6].toarray()
    ours, iterations = K.lloyd(x, c0, 15, 0.0)
    sk = SkKMeans(n_clusters=6, init=c0, n_init=1, max_iter=15, tol=0.0,
                  algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours, sk.cluster_centers_, rtol=1e-9, atol=1e-12)
    assert iterations == sk.n_iter_


def test_a_row_has_one_hash_whether_dense_or_sparse():
    dense = np.array([[0.0, 1.5, 0.0, -2.0], [-0.0, 1.5, 0.0, -2.0], [1.5, 0.0, 0.0, -2.0],
                      [0.0, 0.0, 0.0, 0.0]])
    stored_zero = sp.csr_array((np.array([0.0, 1.5, -2.0]), np.array([0, 1, 3]),
                                np.array([0, 3])), shape=(1, 4))
    h_dense = S.rows_hash(dense)
    h_sparse = S.rows_hash(sp.csr_array(dense))
    np.testing.assert_array_equal(h_dense, h_sparse)
    assert h_dense[0] == h_dense[1]  # -0.0 is a zero
    assert h_dense[0] != h_dense[2]  # the same values at other positions
    assert S.rows_hash(stored_zero)[0] == h_dense[0]
    keys = S.row_keys(dense, 5, 2)
    assert ((keys >= 0) & (keys < 1)).all()


def test_sets_of_rows_do_not_depend_on_how_they_are_stored():
    dense = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, -0.0], [3.0, 0.0, 1.0]])
    keys = np.array([0.4, 0.1, 0.2, 0.3])
    x_d, k_d = S.distinct_rows(dense, keys)
    x_s, k_s = S.distinct_rows(sp.csr_array(dense), keys)
    np.testing.assert_array_equal(k_d, [0.1, 0.2, 0.3])  # row 0 repeats row 2 (key 0.2 first)
    np.testing.assert_array_equal(k_s, k_d)
    np.testing.assert_array_equal(x_s.toarray(), x_d)
    unique = S.unique_rows(sp.csr_array(dense)).toarray()
    assert unique.shape == (3, 3)
    np.testing.assert_array_equal(unique, S.to_dense(S.unique_rows(sp.csr_array(dense[::-1]))))
    np.testing.assert_array_equal(unique, S.unique_rows(dense[::-1]))  # dense: the same order
    mixed = S.stack_rows([dense[:2], sp.csr_array(dense[2:])])
    assert sp.issparse(mixed) and mixed.nnz == 5
    np.testing.assert_array_equal(mixed.toarray(), dense)
