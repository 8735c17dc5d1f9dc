"""The numpy kernel on its own: hand-computed cases and a plain-numpy reference."""

import numpy as np
import pytest

from sparkml_lloyd import _kernel as K
from sparkml_lloyd import _seeding as S


def weighted_sums(x, labels, weights, k):
    """The two-sweep reference of the fused kernel: the same chunks and order of additions as
    ``block_stats``, applied to labels computed over the whole block first."""
    sums = np.zeros((k, x.shape[1]))
    for start in range(0, x.shape[0], K.CHUNK_ROWS):
        stop = start + K.CHUNK_ROWS
        K._add_chunk_sums(sums, x[start:stop], labels[start:stop],
                          None if weights is None else weights[start:stop])
    total = (np.bincount(labels, minlength=k).astype(np.float64) if weights is None
             else np.bincount(labels, weights=weights, minlength=k))
    return sums, total


def brute_force(x, centers):
    d = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    return d.argmin(1), d.min(1)


def test_hand_computed_iteration():
    x = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [12.0, 0.0]])
    centers = np.array([[0.0, 1.0], [11.0, 5.0]])
    stats = K.block_stats(x, None, centers)
    # distances^2: [1, 1, 101+?]. Points 0,1 -> center 0 (1.0 each); 2 -> (1 + 25) = 26;
    # 3 -> (1 + 25) = 26.
    assert stats.counts.tolist() == [2, 2]
    assert stats.cost == pytest.approx(1 + 1 + 26 + 26)
    new, moves = K.update_centers(centers, stats)
    np.testing.assert_array_equal(new, [[0.0, 1.0], [11.0, 0.0]])
    np.testing.assert_allclose(moves, [0.0, 5.0])


# k below and above RUNNING_MIN_MAX_K (running minimum / argmin), d below and above k.
@pytest.mark.parametrize("k,d", [(1, 3), (9, 7), (3, 2), (K.RUNNING_MIN_MAX_K + 3, 5)])
def test_nearest_matches_brute_force_across_chunks(monkeypatch, k, d):
    monkeypatch.setattr(K, "CHUNK_ROWS", 37)
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(500, d)), rng.normal(size=(k, d))
    labels, dist = K.nearest(x, c)
    ref_labels, ref_dist = brute_force(x, c)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("distance", [K.EUCLIDEAN, K.COSINE])
def test_the_labels_alone_are_those_of_nearest(monkeypatch, distance):
    """nearest_labels (transform's: no distances) gives nearest's labels, brute force's."""
    monkeypatch.setattr(K, "CHUNK_ROWS", 41)
    rng = np.random.default_rng(6)
    x, c = rng.normal(size=(400, 6)), rng.normal(size=(K.RUNNING_MIN_MAX_K + 2, 6))
    if distance == K.COSINE:
        x, c = K.normalize_rows(x), K.normalize_rows(c)
    labels = K.nearest_labels(x, c, distance)
    np.testing.assert_array_equal(labels, K.nearest(x, c, distance)[0])
    np.testing.assert_array_equal(labels, brute_force(x, c)[0])
    np.testing.assert_array_equal(K.nearest_labels(x, c[:3], distance),
                                  brute_force(x, c[:3])[0])


def test_the_row_rule_tells_non_finite_values_from_a_sum_that_overflows():
    """A row is non-finite when a value is NaN or infinite; finite values whose sum
    overflows (1e308 + 1e308) are a valid row."""
    from sparkml_lloyd import _rows

    big, inf, nan = 1e308, np.inf, np.nan
    x = np.array([[1.0, 2.0, 3.0], [big, big, 0.0], [big, big, nan], [inf, -inf, 0.0],
                  [0.0, 0.0, -inf], [-big, -big, -big], [nan, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert _rows.judge(x, cosine=False).tolist() == [
        _rows.VALID, _rows.VALID, _rows.NON_FINITE, _rows.NON_FINITE, _rows.NON_FINITE,
        _rows.VALID, _rows.NON_FINITE, _rows.VALID]
    assert _rows.judge(x, cosine=True)[[0, 1, 2, 7]].tolist() == [
        _rows.VALID, _rows.VALID, _rows.NON_FINITE, _rows.ZERO_COSINE]


@pytest.mark.parametrize("k", [2, 5, K.RUNNING_MIN_MAX_K + 3])
def test_ties_go_to_the_lowest_index(k):
    """Duplicate centers: every point is equally near copies 0 and 1 (and 2, ...)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    c = np.repeat(rng.normal(size=(1, 3)), k, axis=0)
    labels, _ = K.nearest(x, c)
    assert (labels == 0).all()
    c[1:] += 100.0  # now 0 is strictly nearest, then equal copies far away
    c[k - 1] = c[0]  # the last equals the first: the tie still goes to 0
    assert (K.nearest(x, c)[0] == 0).all()


@pytest.mark.parametrize("k,d", [(3, 4), (3, 2), (2, 1), (8, 8), (37, 4), (37, 40)])
@pytest.mark.parametrize("weighted", [True, False])
def test_weighted_sums_every_path_equals_reference(monkeypatch, k, d, weighted):
    monkeypatch.setattr(K, "CHUNK_ROWS", 97)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, d))
    w = rng.uniform(0, 3, size=1000) if weighted else None
    ww = w if weighted else np.ones(1000)
    labels = rng.integers(0, k, size=1000).astype(np.int32)
    x.flags.writeable = False  # blocks are read-only memory maps
    sums, wsum = weighted_sums(x, labels, w, k)
    ref = np.array([(x[labels == j] * ww[labels == j, None]).sum(0) for j in range(k)])
    np.testing.assert_allclose(sums, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wsum, [ww[labels == j].sum() for j in range(k)])


# every (assignment, sums) path of the kernel, with and without weights, both distances
@pytest.mark.parametrize("k,d", [(3, 4), (3, 2), (2, 1), (37, 40),
                                 (K.RUNNING_MIN_MAX_K + 3, 5)])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("distance", [K.EUCLIDEAN, K.COSINE])
def test_block_stats_in_one_sweep_equals_assign_then_sum(monkeypatch, k, d, weighted, distance):
    """block_stats assigns and sums chunk by chunk (one read of a large block per
    iteration); the result is bit for bit the whole-block assignment followed by the sums,
    and agrees with a brute-force reference."""
    monkeypatch.setattr(K, "CHUNK_ROWS", 61)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, d))
    c = rng.normal(size=(k, d))
    if distance == K.COSINE:
        x, c = K.normalize_rows(x), K.normalize_rows(c)
    w = rng.uniform(0, 3, size=1000) if weighted else None
    x.flags.writeable = False  # blocks are read-only memory maps
    stats = K.block_stats(x, w, c, distance)
    labels, dist = K.nearest(x, c, distance)
    sums, wsum = weighted_sums(x, labels, w, k)
    np.testing.assert_array_equal(stats.sums, sums)
    np.testing.assert_array_equal(stats.weights, wsum)
    assert stats.counts.tolist() == np.bincount(labels, minlength=k).tolist()
    assert stats.cost == (float(dist @ w) if weighted else float(dist.sum()))
    if distance == K.EUCLIDEAN:
        ref_labels, ref_dist = brute_force(x, c)
        ww = w if weighted else np.ones(1000)
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_allclose(stats.cost, (ref_dist * ww).sum(), rtol=1e-10)
        ref = np.array([(x[ref_labels == j] * ww[ref_labels == j, None]).sum(0)
                        for j in range(k)])
        np.testing.assert_allclose(stats.sums, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backwards", [False, True])
def test_the_passes_of_several_fits_in_one_sweep_equal_each_pass_alone(backwards):
    """``many_pass`` serves the pending passes of several fits (Lloyd steps of two distances
    and ks, a cost pass, a k-means|| sample pass) in one sweep of a partition's blocks; each
    result has the bits its pass function alone gives."""
    from sparkml_lloyd import _passes as P

    rng = np.random.default_rng(12)
    blocks = [(rng.normal(size=(rows, 6)), rng.uniform(0.5, 2.0, rows) if i % 2 else None)
              for i, rows in enumerate([300, 5, 1200])]
    c3, c5, c8 = (rng.normal(size=(k, 6)) for k in (3, 5, 8))
    requests = [
        (P.stats_pass, c3, {"distance": K.EUCLIDEAN, "backwards": not backwards}),
        (P.cost_pass, c5, {"distance": K.EUCLIDEAN}),
        (P.stats_pass, c8, {"distance": K.EUCLIDEAN}),
        (P.sample_pass, c3, {"distance": K.EUCLIDEAN, "seed": 4, "stream": 2, "factor": 0.3}),
        (P.stats_pass, c5, {"distance": K.EUCLIDEAN}),
    ]
    got = P.many_pass(blocks, requests, backwards=backwards)
    for result, (fn, centers, kwargs) in zip(got, requests, strict=True):
        alone = fn(blocks, centers, **{k: v for k, v in kwargs.items() if k != "backwards"})
        if fn is P.stats_pass:
            for a, b in zip(result, alone, strict=True):
                np.testing.assert_array_equal(a, b)
        elif fn is P.cost_pass:
            assert result == alone
        else:
            assert len(result) == len(alone)
            for (xa, ka), (xb, kb) in zip(result, alone, strict=True):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ka, kb)


def test_empty_cluster_keeps_its_center():
    x = np.array([[0.0], [1.0], [2.0]])
    centers = np.array([[1.0], [100.0]])  # nobody is near 100
    new, moves = K.update_centers(centers, K.block_stats(x, None, centers))
    np.testing.assert_array_equal(new, [[1.0], [100.0]])
    np.testing.assert_array_equal(moves, [0.0, 0.0])


def test_cosine_centers_are_unit_means_of_unit_points():
    x = K.normalize_rows(np.array([[1.0, 0.0], [3.0, 3.0], [0.0, -2.0]]))
    centers = np.array([[1.0, 0.0], [0.0, -1.0]])
    stats = K.block_stats(x, None, centers, K.COSINE)
    assert stats.counts.tolist() == [2, 1]
    new, _ = K.update_centers(centers, stats, K.COSINE)
    expected = x[0] + x[1]
    np.testing.assert_allclose(new[0], expected / np.linalg.norm(expected))
    # cost = sum of 1 - cos: 0 for x0, 1 - cos(45deg) for x1, 0 for x2
    assert stats.cost == pytest.approx(1 - np.sqrt(0.5))


def test_merge_is_the_sum_of_the_parts():
    rng = np.random.default_rng(3)
    x, c = rng.normal(size=(300, 3)), rng.normal(size=(4, 3))
    whole = K.block_stats(x, None, c)
    merged = K.merge_stats([K.block_stats(x[:100], None, c), K.block_stats(x[100:], None, c)],
                           4, 3)
    np.testing.assert_allclose(merged.sums, whole.sums, rtol=1e-12)
    assert merged.counts.tolist() == whole.counts.tolist()
    assert merged.cost == pytest.approx(whole.cost, rel=1e-12)


def test_row_uniforms_depend_only_on_seed_stream_and_id():
    ids = np.arange(10_000, dtype=np.uint64)
    u = S.row_uniforms(7, 0, ids)
    np.testing.assert_array_equal(u[5000:], S.row_uniforms(7, 0, ids[5000:]))
    assert not np.array_equal(u, S.row_uniforms(8, 0, ids))
    assert not np.array_equal(u, S.row_uniforms(7, 1, ids))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
