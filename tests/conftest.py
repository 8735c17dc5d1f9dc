"""One local SparkSession for the whole test run (startup costs ~10 s)."""

from __future__ import annotations

import pytest

from sparkml_lloyd.session import JavaNotFoundError, check_java, local_session


def pytest_configure(config):
    try:
        check_java()
    except JavaNotFoundError as e:
        pytest.exit(str(e), returncode=3)


@pytest.fixture(scope="session")
def spark():
    # local[2,4]: two cores, and a failed task is retried (plain local[N] never retries).
    session = local_session("local[2,4]", app_name="sparkml_lloyd-tests")
    yield session
    session.stop()
