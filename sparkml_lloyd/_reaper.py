"""A watcher that deletes the block files of a JVM that has died (standard library only).

Blocks are deleted by the fit that wrote them when it ends; this covers the owner dying
instead (the driver or an executor killed, a notebook kernel restarted: in local mode the
executor *is* the driver's JVM, and a driver's JVM ends with its Python). The first block a JVM
writes on a host starts one watcher for that JVM there: a small detached process that checks
every :data:`POLL_SECONDS` whether the JVM still runs (its pid with the same start time, so a
reused pid does not fool it) and, once it does not, deletes the files matching the pattern
:mod:`sparkml_lloyd._blockstore` gave it (that JVM's blocks) and ends. One watcher per JVM and
directory: a marker file, created with ``O_EXCL``, holds the watcher's pid. Like any daemon
it runs in its own session from ``/``, so it neither holds the executor's working directory
(Spark deletes an application's folder when it ends) nor looks like a process of it.

The watcher runs this file as a script (``python _reaper.py JVM_PID START MARKER PATTERN``):
it imports neither the package nor numpy, so it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
import sys
import time

POLL_SECONDS = 1.0
#: How our files are created (here and by the block store): a new file only, never an
#: existing one, never through a symlink.
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
    os, "O_CLOEXEC", 0)


def start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, ``/proc/PID/stat`` field 22), or
    None when it does not run (or there is no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_dir_if_empty(directory: str) -> None:
    """``rmdir``: removes the directory only when nothing is in it."""
    with contextlib.suppress(OSError):
        os.rmdir(directory)


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


def ensure(jvm_pid: int, marker: str, pattern: str) -> None:
    """Start the watcher that deletes the files matching ``pattern`` when ``jvm_pid`` ends,
    unless the one named in ``marker`` runs."""
    started = start_time(jvm_pid)
    if started is None or jvm_pid == os.getpid():
        return  # no /proc, or no JVM above us (the blocks are this process's own)
    if os.path.exists(marker):
        if _watcher_alive(marker):
            return
        _unlink(marker)  # its watcher died: take over
    try:
        os.close(os.open(marker, CREATE_NEW, 0o600))
    except FileExistsError:
        return  # another task of this JVM got there first
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(jvm_pid), started, marker, pattern],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        close_fds=True, start_new_session=True, cwd="/")
    proc.wait()  # it forks the watcher and returns at once: no zombie is left to us


def watch(jvm_pid: int, started: str, marker: str, pattern: str) -> int:
    """Wait for the JVM to end, then delete its files; returns how many."""
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    while start_time(jvm_pid) == started:
        time.sleep(POLL_SECONDS)
    paths = glob.glob(pattern)
    for path in paths:
        _unlink(path)
    _unlink(marker)
    remove_dir_if_empty(os.path.dirname(marker))  # the last one out leaves nothing behind
    return len(paths)


def main(argv: list[str]) -> int:
    jvm_pid, started, marker, pattern = int(argv[0]), argv[1], argv[2], argv[3]
    if os.fork():  # the parent returns to ensure() at once; the watcher lives on, detached
        return 0
    watch(jvm_pid, started, marker, pattern)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
