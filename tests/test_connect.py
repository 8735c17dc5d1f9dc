"""Spark Connect: the same estimator on a real Connect server (started from the pip package,
stopped by PID), the client in its own process, checked against scikit-learn, Spark's own
model and the classic backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

from sparkml_lloyd import LloydKMeans
from tests import connect_client as client
from tests.connect_server import ConnectServer
from tests.helpers import relative_difference

ROOT = Path(__file__).resolve().parents[1]


def run_client(url: str, scenario: str, folder: str, timeout: float = 600) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    out = subprocess.run([sys.executable, "-m", "tests.connect_client", url, scenario, folder],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def server():
    with ConnectServer("local[2]") as s:
        yield s


@pytest.fixture(scope="module")
def api(server):
    with tempfile.TemporaryDirectory(prefix="sparkml_lloyd-connect-") as folder:
        yield run_client(server.url, "api", folder)


@pytest.fixture(scope="module")
def classic(spark):
    """The same fits on the classic backend (this process's local session)."""
    frames = client.frames(spark, client.data())
    return {name: LloydKMeans(**params).fit(frames[frame])
            for name, (frame, params) in client.fits().items()}


def test_the_client_is_a_connect_session(api):
    assert api["session"] == "pyspark.sql.connect.session"


def test_the_walkthrough_holds_on_connect(api):
    walk = api["walkthrough"]
    assert walk["iterations"][0][3] == [1124, 57, 319]
    assert walk["numIter"] == 6 and walk["sizes"] == [500, 500, 500] and walk["converged"]


@pytest.mark.parametrize("name", list(client.fits()))
def test_same_centers_and_iterations_as_the_classic_backend(api, classic, name):
    ours, theirs = api[name], classic[name]
    assert relative_difference(ours["centers"], theirs.clusterCenters()) <= 1e-12
    assert ours["numIter"] == theirs.summary.numIter
    assert ours["sizes"] == theirs.summary.clusterSizes
    assert ours["costHistory"] == pytest.approx(theirs.summary.costHistory, rel=1e-12)


def test_the_walkthrough_equals_scikit_learn(api):
    x = client.data()["walk"]
    sk = SkKMeans(n_clusters=3, init=x[:3], n_init=1, max_iter=20, tol=0.0,
                  algorithm="lloyd").fit(x)
    assert relative_difference(api["walkthrough"]["centers"], sk.cluster_centers_) <= 1e-9
    assert api["transform"] == sk.labels_.tolist()
    assert api["spark model"] == sk.labels_.tolist()  # Spark's own KMeansModel, our centers
    assert api["predict"] == int(sk.predict(np.zeros((1, 2)))[0])


def test_the_callback_gets_every_iteration_with_its_centers(api):
    walk = api["walkthrough"]
    assert [i for i, _ in api["callback"]] == list(range(1, walk["numIter"] + 1))
    assert api["callback"][-1][1] == walk["centers"]


def test_save_load_pipeline_and_cross_validation(api):
    assert api["loaded"]["centers"] == api["walkthrough"]["centers"]
    assert api["loaded"]["estimator"] == [7, 0.5]
    assert api["pipeline"] == api["transform"]
    assert api["cross validation"]["k"] == 3  # the walkthrough's data has three blobs
    assert len(api["cross validation"]["metrics"]) == 3


def test_invalid_rows_follow_the_row_rule(api):
    assert "featuresCol='features' has 1 rows with NaN" in api["invalid"]
    assert api["kept"] == ["null", "row", "row"]
