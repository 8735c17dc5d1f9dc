"""The facts of the original walkthrough (../shared/seed), reproduced with the package."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from sparkml_lloyd import LloydKMeans
from tests.helpers import blobs


@pytest.fixture(scope="module")
def walkthrough_blobs(spark):
    """The walkthrough's data: 1500 points in 3 blobs in 2-D, their blob, their DataFrame."""
    return blobs(spark, n_samples=1500, random_state=8)


def fit(df, X, **params):
    return LloydKMeans(k=3, initialCenters=X[:3], tol=0.0, **params).fit(df)


def test_first_assignment_sizes(walkthrough_blobs):
    X, _, df = walkthrough_blobs
    model = fit(df, X, maxIter=0)
    assert model.summary.clusterSizes == [1124, 57, 319]
    assert model.summary.numIter == 0
    np.testing.assert_array_equal(np.array(model.clusterCenters()), X[:3])


def test_first_update_centers(walkthrough_blobs):
    X, _, df = walkthrough_blobs
    centers = np.array(fit(df, X, maxIter=1).clusterCenters())
    expected = [[1.70113951, -3.14750123], [5.88201222, 9.8330787], [7.96381989, 9.8000387]]
    np.testing.assert_allclose(centers, expected, atol=5e-9)


def test_converges_to_the_three_blobs_in_six_iterations(walkthrough_blobs):
    X, y, df = walkthrough_blobs
    model = fit(df, X, maxIter=50)
    assert model.summary.numIter == 6
    assert model.summary.clusterSizes == [500, 500, 500]
    labels = [r.prediction for r in model.transform(df).orderBy("id").collect()]
    assert adjusted_rand_score(y, labels) == 1.0
