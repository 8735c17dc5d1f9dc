"""A whole fit in one barrier job, on the executors (the Spark Connect backend's executor side).

Under Spark Connect the client may be far away: no executor can reach it, and every query is
a round trip to the server (~0.2 s). So the fit runs where the data is: one
``mapInArrow(..., barrier=True)`` job whose tasks (all running at once) each read their
partition into blocks held in the task's memory (:func:`sparkml_lloyd._prepare.blocks_of`),
then meet once (``BarrierTaskContext.allGather``, up to a second each whatever the data): to
pool their findings and learn the coordinator's address, task 0 listening before they meet.
Task 0 is the coordinator: once every task has connected it checks the data and the memory
(a problem: it tells every task to stop), and runs the fit driver
(:func:`sparkml_lloyd._fit.run`) over the executor loop's protocol (:mod:`sparkml_lloyd._loop`),
every task (its own too, from a thread) answering the passes on its blocks. Only the result goes
back to the client, in chunks (:func:`decode`).

A problem with the data (a ``ValueError`` of the checks or of the initialisation) ends the job
normally with an ``error`` row, which the client raises: a failed barrier stage would be
retried whole. Anything else (a lost executor, a broken connection) fails the task; Spark then
retries the whole stage, which computes the same result again from the same data.
"""

from __future__ import annotations

import base64
import pickle
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from sparkml_lloyd import _fit, _loop, _memory, _prepare
from sparkml_lloyd import _kernel as K
from sparkml_lloyd._transport import _blas_threads

#: The job's output: ``(kind, index, chunk)`` rows, only from task 0.
RESULT_SCHEMA = "kind string, idx int, blob binary"
#: Bytes of the result per output row (Spark Connect streams rows in messages of bounded
#: size; one 210 MB value would not fit).
CHUNK_BYTES = 16 << 20
#: Seconds the coordinator waits for every task to connect.
CONNECT_TIMEOUT = 60.0


def _encode(obj: Any) -> str:
    return base64.b64encode(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).decode()


def _decode(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


def _rows(kind: str, payload: Any) -> Iterator[pa.RecordBatch]:
    blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    chunks = [blob[i:i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)] or [b""]
    yield pa.RecordBatch.from_arrays(
        [pa.array([kind] * len(chunks)), pa.array(range(len(chunks)), pa.int32()),
         pa.array(chunks, pa.binary())], ["kind", "idx", "blob"])


def decode(rows: Iterable[Any]) -> tuple[str, Any]:
    """The job's result, from its collected rows: ``("result", [(FitResult or the message
    of its ValueError, centers per iteration or None) per fit])`` or ``("error", message)``
    (the data cannot serve any fit)."""
    rows = sorted(rows, key=lambda r: r.idx)
    kinds = {r.kind for r in rows}
    if len(kinds) != 1:
        raise RuntimeError(f"the fit's barrier job returned {sorted(kinds)}")
    return kinds.pop(), pickle.loads(b"".join(bytes(r.blob) for r in rows))


def _check(found: _prepare.Findings, cfgs: list[_fit.FitConfig],
           partitions: int) -> str | None:
    """The data and memory verdicts, as the message of the ValueError, or None."""
    try:
        for cfg in cfgs:
            _fit.check_data(found, cfg)
        plan = _fit.memory_plan_many(cfgs, next(iter(found.lengths)), partitions, found)
        _memory.check(plan, _memory.available_bytes(), None, found.hosts,
                      socket.gethostname())
    except ValueError as exc:
        return str(exc)
    return None


def fit_task(batches: Iterable[pa.RecordBatch], cfgs: list[_fit.FitConfig],
             record_centers: bool) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body of the barrier job (see the module docstring): the fits of
    ``cfgs`` (sharing one preparation) in the same passes."""
    from pyspark import BarrierTaskContext

    ctx = BarrierTaskContext.get()
    me = ctx.partitionId()
    blocks: list[tuple[K.Rows, Any]] = []
    parts = []
    for x, w, found in _prepare.blocks_of(batches, **_fit.shared_preparation(cfgs)):
        if x.shape[0] and len(found.lengths) <= 1:
            blocks.append((x, w))
        found.hosts = _memory.Hosts.here(_prepare.block_bytes(x, w), me)
        parts.append(found)
    if not parts:
        found = _prepare.Findings()
        found.hosts = _memory.Hosts.here(0, me)
        parts.append(found)
    # Task 0 listens before the tasks meet, so that one allGather both pools the findings
    # and gives everyone the coordinator's address: each allGather costs up to a second
    # (Spark's BarrierTaskContext checks for the answer once a second).
    server = None
    address = ""
    if me == 0:
        host = ctx.getTaskInfos()[0].address.rsplit(":", 1)[0]
        server = _loop.Coordinator(len(ctx.getTaskInfos()), host, host, CONNECT_TIMEOUT)
        address = f"{server.address[0]}:{server.address[1]}:{server.token}"
    everyone = [_decode(m) for m in ctx.allGather(
        _encode((_prepare.Findings.merged(parts), address)))]
    host, port, token = everyone[0][1].rsplit(":", 2)

    def compute(msg: tuple[Any, Any, dict[str, Any]]) -> Any:
        fn, centers, kwargs = msg
        with _blas_threads():
            return fn(blocks, centers, **kwargs)

    if me != 0:  # a lost coordinator fails this task too: Spark then reruns the whole stage
        _loop.serve((host, int(port)), token, me, compute, required=True)
        return  # told to stop: the fit is done, or the data cannot serve it
    assert server is not None
    mine = threading.Thread(target=_loop.serve, args=((host, int(port)), token, 0, compute),
                            daemon=True)
    mine.start()
    centers_seen: list[list[Any]] = [[] for _ in cfgs]
    try:
        server.wait_for_tasks(problem=lambda: None)
        found = _prepare.Findings.merged([f for f, _ in everyone])
        problem = _check(found, cfgs, len(everyone))
        if problem is not None:
            results = None
        else:
            callbacks = [(lambda r, c, seen=seen: seen.append(c)) if record_centers else None
                         for seen in centers_seen]
            results = _fit.run_many(_LoopPasses(server), found, cfgs, callbacks)
    finally:
        server.close()  # tells every task to stop
        mine.join(timeout=5.0)
    if results is None:
        yield from _rows("error", problem)
        return
    # a fit the data cannot serve (too few distinct points ...) is the client's ValueError
    yield from _rows("result", [(str(r), None) if isinstance(r, ValueError)
                                else (r, seen if record_centers else None)
                                for r, seen in zip(results, centers_seen, strict=True)])


class _LoopPasses:
    """Passes over the connected tasks (the coordinator's own among them)."""

    def __init__(self, server: _loop.Coordinator) -> None:
        self.server = server

    def run(self, fn: Any, centers: Any, **kwargs: Any) -> list[Any]:
        from sparkml_lloyd._transport import as_rows

        return self.server.step((fn, as_rows(centers), kwargs), problem=lambda: None)

    def close(self) -> None:
        self.server.close()
