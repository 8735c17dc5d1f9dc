"""Spark Connect: the same estimator on a real Connect server (started from the pip package,
stopped by PID), the client in its own process, checked against scikit-learn, Spark's own
model and the classic backend."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans

from sparkml_lloyd import LloydKMeans
from sparkml_lloyd._blockstore import block_files
from tests import connect_client as client
from tests.connect_server import ConnectServer
from tests.helpers import relative_difference
from tests.procs import WARM_DAEMON_CONF

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    """A local[2] Connect server whose Python workers fork from tests/warm_daemon.py, as the
    local session's do (each of its ~20 workers would import pandas, pyarrow and numpy
    again)."""
    with ConnectServer("local[2]", conf=WARM_DAEMON_CONF,
                       pythonpath=[str(ROOT)]) as s:
        yield s


@pytest.fixture(scope="module")
def api(server):
    with tempfile.TemporaryDirectory(prefix="sparkml_lloyd-connect-") as folder:
        yield client.run(server.url, "api", folder)


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


def test_fit_multiple_and_the_sweep_equal_the_classic_fits(spark, api):
    """fitMultiple on Connect (the models in one barrier job): each model equals the classic
    single fit of its param map; the sweep of the walkthrough finds k=3 with the classic
    sweep's costs and silhouettes."""
    from sparkml_lloyd import sweep

    frames = client.frames(spark, client.data())
    frame, shared, maps = client.many()
    for ours, params in zip(api["fit multiple"], maps, strict=True):
        theirs = LloydKMeans(**{**shared, **params}).fit(frames[frame])
        assert relative_difference(ours["centers"], theirs.clusterCenters()) <= 1e-12
        assert ours["numIter"] == theirs.summary.numIter
        assert ours["costHistory"] == pytest.approx(theirs.summary.costHistory, rel=1e-12)
    classic = sweep(frames["walk"], range(2, 7), estimator=LloydKMeans(seed=1))
    assert api["sweep"]["k"] == classic.suggested_k == 3
    assert api["sweep"]["costs"] == pytest.approx([r.cost for r in classic.rows], rel=1e-12)
    assert api["sweep"]["silhouettes"] == pytest.approx(
        [r.silhouette for r in classic.rows], rel=1e-9)


def test_the_command_line_with_remote(api):
    """sparkml-lloyd fit/predict --remote: the walkthrough's points, three clusters of 500."""
    assert api["cli"] == {"status": [0, 0], "rows": 1500, "sizes": [500, 500, 500]}


def test_invalid_rows_follow_the_row_rule(api):
    assert "featuresCol='features' has 1 rows with NaN" in api["invalid"]
    assert api["kept"] == ["null", "row", "row"]


# -- faults --------------------------------------------------------------------------------

def test_a_client_killed_mid_fit_leaves_nothing_running_within_a_minute(server):
    """kill -9 of the client while its fit runs: the server interrupts the fit's job (it
    fails, rather than running to its end) and, within 60 s, runs no job of it, holds no
    cached data and no block file; then it serves another client."""
    app = server.app_id()
    client_proc = client.start(server.url, "long", "2e7")  # ~50 s if left alone
    try:
        fit_job = server.running_barrier_job(app)
        killed = time.monotonic()
        client_proc.kill()
        client_proc.wait(timeout=30)
        while True:
            running = server.rest(f"applications/{app}/jobs?status=running")
            cached = server.rest(f"applications/{app}/storage/rdd")
            if not running and not cached:
                break
            assert time.monotonic() - killed < 60.0, (running, cached)
            time.sleep(1.0)
    finally:
        client_proc.kill()
    print(f"nothing left {time.monotonic() - killed:.1f} s after the client was killed")
    status = server.rest(f"applications/{app}/jobs/{fit_job}")["status"]
    assert status == "FAILED"  # interrupted, not run to its end
    assert block_files({server.pid}) == []
    result = client.run(server.url, "long", "1e4")  # the server carries on
    assert result["numIter"] == 320


def test_transform_follows_the_row_rule_on_every_path_as_classic_does(spark, api):
    """Every row kind x vector and array columns x handleInvalid, on Connect as on the classic
    session: the same predictions, skipped rows and errors, and the same path: a small model
    assigns with Spark's scorer (on Connect, loaded on the server), a large one with the Arrow
    UDF."""
    from sparkml_lloyd import _rows

    classic = client.row_rule_outcomes(spark)
    remote = api["row rule"]
    assert set(remote) == set(classic)
    for case, theirs in classic.items():
        ours = remote[case]
        assert ours["path"] == theirs["path"] == (
            "arrow" if case.startswith("large") else "jvm"), case
        assert ours["rows"] == theirs["rows"], case
        if case.endswith("error"):  # the first invalid row a task meets: partitions race
            messages = [_rows.message(kind, "features", 2) for kind in _rows.ORDER]
            for error in (ours["error"], theirs["error"]):
                assert any(m in error for m in messages), (case, error)
    keep = [[0, 0], [1, None], [2, None], [3, None], [4, None], [5, None], [6, 1], [7, 0]]
    assert remote["small vector keep"]["rows"] == keep
    assert remote["cosine array skip"]["rows"] == [[0, 1], [6, 0]]  # [0, 0] has no direction
