"""A long-lived executor-side loop for Lloyd's iterations: sockets and pickle, no Spark here.

Why: every Spark job that runs Python code costs ~0.1 s on a small machine (scheduling,
handing the task to a Python worker, collecting), more than the arithmetic of one pass over
a million 2-D rows. Instead of one job per iteration, one job starts one task per partition;
each task connects to a small server on the driver (:class:`Coordinator`) and loops in
:func:`serve`: receive the centers, run the pass over its already-mapped blocks, send back the
``k x d`` result. An iteration then costs the arithmetic plus one round trip.

The loop is an accelerator, never the only way: the driver goes back to one Spark job per
pass (same function on the same blocks, so the same bits) whenever anything is off — not every
partition connects in time, a block is not on its task's host, a connection drops (worker or
executor lost), a task fails. Each is a :class:`LoopBroken`.

Security: a task proves itself with a random token (sent to it inside the Spark task, like the
task's own code) in a fixed-size binary hello that is checked before anything is unpickled.
The server accepts each expected partition once, then stops listening.
"""

from __future__ import annotations

import hmac
import pickle
import secrets
import selectors
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

#: Hello: token (hex, fixed length), partition index, status.
_TOKEN_CHARS = 32
_HELLO = struct.Struct("!iB")
_OK, _MISS = 0, 1
_LEN = struct.Struct("!Q")
#: Message header: pickle length, number of out-of-band buffers.
_HEAD = struct.Struct("!QI")
#: How long a connected task waits for the driver's next message before giving up.
TASK_IDLE_TIMEOUT = 600.0
#: How long a task tries to reach the driver.
TASK_CONNECT_TIMEOUT = 10.0


class LoopBroken(Exception):
    """The loop cannot go on; the caller falls back to one Spark job per pass."""


def _send(conn: socket.socket, obj: Any) -> None:
    """One message: a header (pickle length, number of out-of-band buffers, their lengths),
    the pickle, then the buffers. Arrays (the centers, the sums: 210 MB at k = 100 and
    d = 2^18) go as pickle-5 out-of-band buffers, straight from their memory: no copy into
    the pickle, none into one big message."""
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    sizes = b"".join(_LEN.pack(r.nbytes) for r in raws)
    conn.sendall(_HEAD.pack(len(payload), len(raws)) + sizes + payload)
    for raw in raws:
        conn.sendall(raw)


def _recv_exact(conn: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = conn.recv_into(view[got:], n - got)
        if r == 0:
            raise EOFError("connection closed")
        got += r
    return buf


def _recv(conn: socket.socket) -> Any:
    size, count = _HEAD.unpack(_recv_exact(conn, _HEAD.size))
    sizes = [_LEN.unpack_from(b, 0)[0] for b in
             (_recv_exact(conn, _LEN.size) for _ in range(count))]
    payload = _recv_exact(conn, size)
    buffers = [_recv_exact(conn, n) for n in sizes]  # the arrays' own (writable) memory
    return pickle.loads(payload, buffers=buffers)


class Coordinator:
    """Driver side: waits for one connection per partition, then runs steps over them.

    Parameters
    ----------
    partitions:
        Number of tasks (partitions) expected, indexed ``0 .. partitions - 1``.
    bind_host, advertise_host:
        Where to listen, and the name tasks connect to (the driver's bind address and host).
    connect_timeout:
        Seconds to wait for every partition to connect.
    """

    def __init__(self, partitions: int, bind_host: str, advertise_host: str,
                 connect_timeout: float) -> None:
        self.partitions = partitions
        self.connect_timeout = connect_timeout
        self.token = secrets.token_hex(_TOKEN_CHARS // 2)
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        self._server: socket.socket | None = socket.create_server((bind_host, 0), family=family)
        self.address = (advertise_host, self._server.getsockname()[1])
        self._conns: dict[int, socket.socket] = {}

    def wait_for_tasks(self, problem: Callable[[], str | None]) -> None:
        """Accept one authenticated connection per partition, or raise :class:`LoopBroken`.

        ``problem`` is polled while waiting: a reason the tasks cannot all connect (their job
        ended, some cannot get a task slot), or None.
        """
        server = self._server
        if server is None:
            raise LoopBroken("the coordinator is closed")
        deadline = time.monotonic() + self.connect_timeout
        while len(self._conns) < self.partitions:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoopBroken(
                    f"{len(self._conns)} of {self.partitions} partitions connected within "
                    f"{self.connect_timeout:g} s (not enough free task slots?)"
                )
            reason = problem()
            if reason:
                raise LoopBroken(reason)
            if _readable([server], min(remaining, 0.1)):
                self._accept(server)
        server.close()
        self._server = None

    def _accept(self, server: socket.socket) -> None:
        conn, _ = server.accept()
        try:
            conn.settimeout(5.0)
            hello = _recv_exact(conn, _TOKEN_CHARS + _HELLO.size)
            token = hello[:_TOKEN_CHARS]
            index, status = _HELLO.unpack(hello[_TOKEN_CHARS:])
        except (OSError, EOFError, struct.error):
            conn.close()
            return
        if not hmac.compare_digest(token, self.token.encode()):
            conn.close()  # not one of our tasks: nothing of it is unpickled
            return
        if not 0 <= index < self.partitions or index in self._conns:
            _stop_quietly(conn)  # a speculative or retried copy: the first one does the work
            return
        if status == _MISS:
            _stop_quietly(conn)
            raise LoopBroken(f"partition {index}'s blocks are not on its task's host")
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns[index] = conn

    def step(self, message: Any, problem: Callable[[], str | None]) -> list[Any]:
        """Send ``message`` to every task; their replies in partition order. ``problem`` is
        polled every second while waiting (see :meth:`wait_for_tasks`)."""
        if self._server is not None or len(self._conns) != self.partitions:
            raise LoopBroken("the tasks are not all connected")
        try:
            for conn in self._conns.values():
                _send(conn, ("step", message))
            replies: dict[int, Any] = {}
            pending = {conn: index for index, conn in self._conns.items()}
            while pending:
                ready = _readable(pending, 1.0)
                reason = None if ready else problem()
                if reason:
                    raise LoopBroken(reason)
                for conn in ready:
                    replies[pending.pop(conn)] = _recv(conn)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise LoopBroken(f"a task's connection broke ({type(exc).__name__}: {exc})") from exc
        return [replies[i] for i in range(self.partitions)]

    def close(self) -> None:
        """Tell every task to stop and close everything (idempotent)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            _stop_quietly(conn)


def _readable(socks: Iterable[socket.socket], timeout: float) -> list[socket.socket]:
    """The sockets with something to read within ``timeout`` seconds. Through ``selectors``
    (epoll on Linux): ``select.select`` refuses file descriptors >= 1024, which a driver with
    many open files reaches."""
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(timeout)]  # type: ignore[misc]


def _stop_quietly(conn: socket.socket) -> None:
    try:
        conn.settimeout(1.0)
        _send(conn, ("stop", None))
    except OSError:
        pass
    finally:
        conn.close()


def serve(address: tuple[str, int], token: str, index: int,
          compute: Callable[[Any], Any] | None, required: bool = False) -> int:
    """Task side: connect, say hello, answer steps until told to stop; the number of steps.

    ``compute`` is None when this task cannot serve (its blocks are not on this host): the
    hello then says so and the driver falls back. Returns quietly when the driver is gone or
    no longer listening (it has fallen back, or this is a retried copy of the task); an
    exception from ``compute`` propagates, so Spark reports the task's failure. With
    ``required`` (a barrier task, whose coordinator is another task) losing the coordinator
    without its stop raises ``ConnectionError`` instead: the task must fail, so that Spark
    reruns the whole barrier stage rather than this task's finished output standing.
    """
    try:
        conn = socket.create_connection(address, timeout=TASK_CONNECT_TIMEOUT)
    except OSError as exc:
        if required:
            raise ConnectionError(f"cannot reach the fit's coordinator: {exc}") from exc
        return 0
    steps = 0
    with conn:
        try:
            # One write per message each way: no reason to wait for acknowledgements.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sendall(token.encode() + _HELLO.pack(index, _OK if compute else _MISS))
            conn.settimeout(TASK_IDLE_TIMEOUT)
            while True:
                kind, message = _recv(conn)
                if kind != "step" or compute is None:
                    return steps
                reply = compute(message)
                _send(conn, reply)
                steps += 1
        except (OSError, EOFError) as exc:
            if required:
                raise ConnectionError(f"the fit's coordinator is gone: {exc!r}") from exc
            return steps  # the driver closed the loop: it finished or fell back
