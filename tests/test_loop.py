"""The executor loop's socket protocol (sparkml_lloyd/_loop.py), without Spark: tasks are
threads here. Spark-level behaviour (same bits as one job per pass, fallback when a worker
dies) is in tests/test_executor_loop.py and tests/test_cluster.py."""

from __future__ import annotations

import contextlib
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from sparkml_lloyd import _loop
from sparkml_lloyd._loop import Coordinator, LoopBroken, serve


@pytest.fixture
def coordinator() -> Iterator[Coordinator]:
    c = Coordinator(3, "127.0.0.1", "127.0.0.1", connect_timeout=5.0)
    yield c
    c.close()


def start_task(c: Coordinator, index: int, compute: Callable[[Any], Any] | None,
               token: str | None = None) -> tuple[threading.Thread, dict[str, Any]]:
    """A task in a thread; its return value (steps answered) lands in the dict."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["steps"] = serve(c.address, token or c.token, index, compute)
        except BaseException as e:  # reported by the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_steps_return_every_partition_in_order_and_stop_ends_the_tasks(coordinator):
    # tasks connect in reverse order; replies still come back by partition index
    tasks = [start_task(coordinator, i, lambda c, i=i: (i, float(c.sum()) * (i + 1)))
             for i in (2, 1, 0)]
    coordinator.wait_for_tasks(problem=lambda: None)
    assert coordinator.step(np.array([1.0, 2.0]), problem=lambda: None) == [
        (0, 3.0), (1, 6.0), (2, 9.0)]
    assert coordinator.step(np.array([5.0]), problem=lambda: None) == [
        (0, 5.0), (1, 10.0), (2, 15.0)]
    coordinator.close()
    for t, out in tasks:
        t.join(timeout=5)
        assert not t.is_alive() and out == {"steps": 2}


def test_a_wrong_token_is_refused_before_anything_is_unpickled(coordinator, monkeypatch):
    unpickled: list[bytes] = []
    real_loads = pickle.loads
    monkeypatch.setattr(_loop.pickle, "loads",
                        lambda b, **kw: unpickled.append(b) or real_loads(b, **kw))
    intruder = socket.create_connection(coordinator.address)
    intruder.sendall(b"x" * 32 + _loop._HELLO.pack(0, 0) + b"\x00" * 64)
    tasks = [start_task(coordinator, i, lambda c: 1) for i in range(3)]
    coordinator.wait_for_tasks(problem=lambda: None)
    with contextlib.suppress(ConnectionResetError):  # reset: closed with its bytes unread
        assert intruder.recv(1) == b""  # closed on it
    assert unpickled == []
    assert coordinator.step(0, problem=lambda: None) == [1, 1, 1]
    coordinator.close()
    for t, _ in tasks:
        t.join(timeout=5)


def test_a_duplicate_partition_is_told_to_stop_and_the_first_one_works(coordinator):
    first = start_task(coordinator, 1, lambda c: "first")
    time.sleep(0.2)
    coordinator_thread = threading.Thread(
        target=coordinator.wait_for_tasks, kwargs={"problem": lambda: None})
    coordinator_thread.start()
    time.sleep(0.2)
    duplicate = start_task(coordinator, 1, lambda c: "duplicate")
    duplicate[0].join(timeout=5)
    assert duplicate[1] == {"steps": 0}
    others = [start_task(coordinator, i, lambda c: "other") for i in (0, 2)]
    coordinator_thread.join(timeout=5)
    assert coordinator.step(0, problem=lambda: None) == ["other", "first", "other"]
    coordinator.close()
    for t, _ in [first, *others]:
        t.join(timeout=5)


def test_not_every_partition_connecting_in_time_breaks_the_loop():
    c = Coordinator(2, "127.0.0.1", "127.0.0.1", connect_timeout=0.5)
    t, _ = start_task(c, 0, lambda x: x)
    started = time.monotonic()
    with pytest.raises(LoopBroken, match=r"1 of 2 partitions connected within 0\.5 s"):
        c.wait_for_tasks(problem=lambda: None)
    assert time.monotonic() - started < 2
    c.close()
    t.join(timeout=5)
    assert not t.is_alive()


def test_a_problem_reported_while_waiting_breaks_the_loop_at_once():
    c = Coordinator(2, "127.0.0.1", "127.0.0.1", connect_timeout=30.0)
    started = time.monotonic()
    with pytest.raises(LoopBroken, match="the job ended"):
        c.wait_for_tasks(problem=lambda: "the job ended")
    assert time.monotonic() - started < 2
    c.close()


def test_a_task_without_its_blocks_breaks_the_loop(coordinator):
    start_task(coordinator, 0, lambda x: x)
    t, out = start_task(coordinator, 1, None)  # its blocks are not on this host
    with pytest.raises(LoopBroken, match="partition 1's blocks are not on its task's host"):
        coordinator.wait_for_tasks(problem=lambda: None)
    t.join(timeout=5)
    assert out == {"steps": 0}


def test_a_task_that_dies_mid_pass_breaks_the_step_and_its_error_propagates(coordinator):
    def boom(c: Any) -> Any:
        raise RuntimeError("boom in the task")

    tasks = [start_task(coordinator, i, (lambda c: 1) if i != 1 else boom) for i in range(3)]
    coordinator.wait_for_tasks(problem=lambda: None)
    with pytest.raises(LoopBroken, match="connection broke"):
        coordinator.step(0, problem=lambda: None)
    t, out = tasks[1]
    t.join(timeout=5)
    assert isinstance(out.get("error"), RuntimeError)  # Spark would report the task failed
    coordinator.close()
    for t, _ in tasks:
        t.join(timeout=5)
        assert not t.is_alive()


def test_a_task_finds_the_driver_gone_and_returns_quietly():
    c = Coordinator(1, "127.0.0.1", "127.0.0.1", connect_timeout=1.0)
    address, token = c.address, c.token
    c.close()  # the driver fell back and stopped listening
    assert serve(address, token, 0, lambda x: x) == 0


def test_close_is_idempotent_and_stops_listening(coordinator):
    coordinator.close()
    coordinator.close()
    with pytest.raises(OSError):
        socket.create_connection(coordinator.address, timeout=1)
    with pytest.raises(LoopBroken):
        coordinator.wait_for_tasks(problem=lambda: None)
    with pytest.raises(LoopBroken):
        coordinator.step(0, problem=lambda: None)


def test_an_ipv6_driver_address_works():
    """Where the host has IPv6 loopback; elsewhere listening fails with OSError, which the
    engine turns into one Spark job per pass (tests/test_executor_loop.py)."""
    try:
        c = Coordinator(1, "::1", "::1", connect_timeout=5.0)
    except OSError:
        with pytest.raises(OSError):
            socket.create_server(("::1", 0), family=socket.AF_INET6)
        return
    t, out = start_task(c, 0, lambda x: x + 1)
    c.wait_for_tasks(problem=lambda: None)
    assert c.step(41, problem=lambda: None) == [42]
    c.close()
    t.join(timeout=5)
    assert out == {"steps": 1}


def test_file_descriptors_above_1024_work():
    """A driver with many files open gets socket numbers >= 1024, which select.select
    refuses; the loop must still connect and step."""
    import os

    held = [os.dup(0) for _ in range(1100)]
    try:
        c = Coordinator(2, "127.0.0.1", "127.0.0.1", connect_timeout=5.0)
        try:
            tasks = [start_task(c, i, lambda m, i=i: i + m) for i in range(2)]
            c.wait_for_tasks(problem=lambda: None)
            assert min(conn.fileno() for conn in c._conns.values()) >= 1024
            assert c.step(10, problem=lambda: None) == [10, 11]
        finally:
            c.close()
        for t, out in tasks:
            t.join(timeout=5)
            assert out == {"steps": 1}
    finally:
        for fd in held:
            os.close(fd)
