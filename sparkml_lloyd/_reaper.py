"""A watcher that deletes the block files of a JVM that has died (no Spark here).

Blocks are deleted by the fit that wrote them when it ends; this covers the owner dying
instead (the driver or an executor killed, a notebook kernel restarted: in local mode the
executor *is* the driver's JVM, and a driver's JVM ends with its Python). The first block a JVM
writes on a host starts one watcher for that JVM there: a small detached process that checks
every :data:`POLL_SECONDS` whether the JVM still runs (its pid with the same start time, so a
reused pid does not fool it) and, once it does not, deletes that JVM's block files and ends.
One watcher per JVM and host: a marker file ``<PREFIX>watch-<jvm pid>`` in the private block
directory, created with ``O_EXCL``, holds the watcher's pid.

Run as ``python -m sparkml_lloyd._reaper JVM_PID START_TIME DIRECTORY`` (by :func:`ensure`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sparkml_lloyd import _blockstore as bs

POLL_SECONDS = 1.0


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, ``/proc/PID/stat`` field 22), or
    None when it does not run (or there is no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _marker(directory: str, jvm_pid: int) -> str:
    return os.path.join(directory, f"{bs.PREFIX}watch-{jvm_pid}")


def _watcher_alive(marker: str) -> bool:
    try:
        with open(marker) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid == 0:  # just made: its watcher is starting (give it a few seconds)
        try:
            return time.time() - os.stat(marker).st_mtime < 10.0
        except OSError:
            return False
    return start_time(pid) is not None


def ensure(jvm_pid: int, directory: str) -> None:
    """Start the watcher of ``jvm_pid``'s block files in ``directory`` unless one runs."""
    started = start_time(jvm_pid)
    if started is None or jvm_pid == os.getpid():
        return  # no /proc, or no JVM above us (the blocks are this process's own)
    marker = _marker(directory, jvm_pid)
    if os.path.exists(marker):
        if _watcher_alive(marker):
            return
        bs._unlink(marker)  # its watcher died: take over
    try:
        os.close(os.open(marker, bs._CREATE, 0o600))
    except FileExistsError:
        return  # another task of this JVM got there first
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(bs.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sparkml_lloyd._reaper", str(jvm_pid), started, directory],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    proc.wait()  # it forks the watcher and returns at once: no zombie is left to us


def watch(jvm_pid: int, started: str, directory: str) -> int:
    """Wait for the JVM to end, then delete its block files; returns how many."""
    marker = _marker(directory, jvm_pid)
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    while start_time(jvm_pid) == started:
        time.sleep(POLL_SECONDS)
    removed = sum(bs._unlink(p) for p in bs.block_files({jvm_pid}))
    bs._unlink(marker)
    return removed


def main(argv: list[str]) -> int:
    jvm_pid, started, directory = int(argv[0]), argv[1], argv[2]
    if os.fork():  # the parent returns to ensure() at once; the watcher lives on, detached
        return 0
    watch(jvm_pid, started, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
