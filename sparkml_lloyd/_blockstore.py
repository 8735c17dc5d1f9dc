"""Host-local storage of a partition's numpy block between Lloyd iterations (no Spark here).

Why: a cached Python RDD lives in the JVM as pickled bytes and is streamed to a Python worker
and unpickled on *every* iteration, which costs more than the arithmetic. Instead, the first
pass writes each partition's block once to a file in shared memory (``/dev/shm``, else the temp
dir) on the executor's host, and the cached RDD holds only a small :class:`Handle`. Every
later task maps the file read-only (``MAP_POPULATE``: one syscall, no per-page faults): no
transfer, no unpickling, one copy of the data per host.

Safety: a handle names its host; a task that runs elsewhere, or finds the file gone, reports a
miss and the driver recomputes that partition from the RDD's lineage. Files carry the fit's id
and the executor JVM's pid: the fit deletes its files when it ends, and the next fit on a host
deletes files whose JVM has died (executor lost mid-fit).

Privacy: the files hold the user's training data, so they live in a directory of the user's
own (``sparkml_lloyd-<uid>``, mode 0700, see :func:`private_dir`), are created new (never
through a symlink or over an existing file) with mode 0600, and carry 64 random bits in
their names.
"""

from __future__ import annotations

import errno
import glob
import mmap
import os
import secrets
import socket
import stat
import tempfile
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sparkml_lloyd import _reaper
from sparkml_lloyd._kernel import Rows

PREFIX = "sparkml_lloyd-"
#: Where blocks may live, in order of preference: shared memory, then the temp dir.
ROOTS: tuple[str, ...] = ("/dev/shm", tempfile.gettempdir())
_CREATE = _reaper.CREATE_NEW


def private_dir(root: str, create: bool = True) -> str | None:
    """``root/sparkml_lloyd-<uid>``: a directory of this user alone (mode 0700, owned by
    us, not a symlink), or None when it does not exist (``create=False``) or is not such a
    directory (someone else made it, or planted a symlink there).

    Created without a race: ``mkdir`` is atomic and applies the mode itself; an entry that
    was there already is checked with ``lstat`` (a symlink is not followed)."""
    path = os.path.join(root, f"{PREFIX}{os.getuid()}")
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid()
            or stat.S_IMODE(st.st_mode) & 0o077):
        return None
    return path


def _free_bytes(directory: str) -> int:
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def watch_marker(directory: str, jvm_pid: int) -> str:
    """The file naming the watcher of ``jvm_pid``'s blocks in ``directory``
    (:mod:`sparkml_lloyd._reaper`)."""
    return os.path.join(directory, f"{PREFIX}watch-{jvm_pid}")


def storage_dirs(needed_bytes: int = 0) -> list[str]:
    """Our private directories, in the order to try them for a block of ``needed_bytes``:
    the one in ``/dev/shm`` first when it has room for twice that, else the temp dir's first.
    """
    dirs = [d for root in ROOTS
            if (d := private_dir(root)) is not None and os.access(d, os.W_OK)]
    if not dirs:
        names = ", ".join(os.path.join(r, f"{PREFIX}{os.getuid()}") for r in ROOTS)
        raise PermissionError(
            f"no private block directory: {names} are not directories of this user with "
            "mode 0700 (another user or a symlink took the name): remove them, or set TMPDIR "
            "to a directory of your own")
    first_has_room = _free_bytes(dirs[0]) >= 2 * needed_bytes
    return dirs if first_has_room or len(dirs) == 1 else [*dirs[1:], dirs[0]]


class NoRoom(OSError):
    """No block directory on this host had room for a block (``ENOSPC``); nothing of it is
    left. The message says how much was needed and where there was how much."""

    def __init__(self, host: str, needed: int, free: dict[str, int]) -> None:
        from sparkml_lloyd._memory import fmt

        where = ", ".join(f"{d} has {fmt(b)} free" for d, b in free.items())
        super().__init__(errno.ENOSPC, (
            f"no room for a block file of {fmt(needed)} on host {host!r}: {where}. Free room "
            "there, give the hosts more shared memory (/dev/shm), or point TMPDIR at a larger "
            "disk"))


def _jvm_pid() -> int:
    """PID of the JVM that launched this Python worker (daemon -> JVM), or our own PID."""
    pid = os.getppid()
    for _ in range(3):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "java":
                    return pid
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Handle:
    """Where one partition's block lives, and its shape. ``nnz`` is None for a dense block
    (``rows x cols`` float64, row-major), else the number of stored entries of a CSR block:
    the file holds its values (float64), row pointers and column indices (int32)."""

    host: str
    x_path: str
    w_path: str | None
    rows: int
    cols: int
    nnz: int | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the block's files."""
        x = (self.rows * self.cols * 8 if self.nnz is None
             else self.nnz * 12 + (self.rows + 1) * 4)
        return x + (self.rows * 8 if self.w_path else 0)


def write(fit_id: str, partition: int, x: Rows, w: np.ndarray | None) -> Handle:
    """Write one partition's block (dense or CSR, and weights) to host-local storage."""
    try:
        return _write(fit_id, partition, x, w)
    except FileNotFoundError:  # our directory was removed as it emptied (remove_empty_dirs)
        return _write(fit_id, partition, x, w)


def _write(fit_id: str, partition: int, x: Rows, w: np.ndarray | None) -> Handle:
    nnz = x.nnz if sp.issparse(x) else None
    rows, cols = x.shape
    h = Handle(socket.gethostname(), "", None, rows, cols, nnz)
    jvm = _jvm_pid()
    free: dict[str, int] = {}
    for directory in storage_dirs(h.nbytes):
        stem = os.path.join(  # a random part: no name another user could plant ahead of us
            directory, f"{PREFIX}{fit_id}-{jvm}-p{partition}-{secrets.token_hex(8)}"
        )
        _reaper.ensure(jvm, watch_marker(directory, jvm),  # the files go when that JVM
                       os.path.join(directory, f"{PREFIX}*-{jvm}-p*"))  # does, fit or no fit
        w_path = None if w is None else stem + "-w.bin"
        try:
            _write_file(stem + "-x.bin", _parts(x))
            try:
                if w_path is not None:
                    _write_file(w_path, [np.ascontiguousarray(w, dtype=np.float64)])
            except BaseException:
                _unlink(stem + "-x.bin")
                raise
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            free[directory] = _free_bytes(directory)
            continue
        return Handle(h.host, stem + "-x.bin", w_path, rows, cols, nnz)
    raise NoRoom(h.host, h.nbytes, free)


def _parts(x: Rows) -> list[np.ndarray]:
    """What a block file holds: a dense block's values (row-major float64), or a CSR
    block's values (float64), row pointers and column indices (int32), one after another."""
    if not sp.issparse(x):
        return [np.ascontiguousarray(x, dtype=np.float64)]
    return [np.ascontiguousarray(part, dtype=dtype) for part, dtype in
            ((x.data, np.float64), (x.indptr, np.int32), (x.indices, np.int32))]


def _write_file(path: str, parts: list[np.ndarray]) -> None:
    """A new file of mode 0600 holding ``parts`` (never an existing file or a symlink); on
    failure nothing of it is left."""
    fd = os.open(path, _CREATE, 0o600)  # from here on the file is ours
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part.data)
    except BaseException:
        _unlink(path)
        raise


def _map(path: str, nbytes: int) -> memoryview | bytes:
    if nbytes == 0:
        return b""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        return memoryview(mmap.mmap(fd, nbytes, flags=flags, prot=mmap.PROT_READ))
    finally:
        os.close(fd)


def _open_x(h: Handle) -> Rows:
    if h.nnz is None:
        buf = _map(h.x_path, h.rows * h.cols * 8)
        return np.frombuffer(buf, dtype=np.float64).reshape(h.rows, h.cols)
    buf = _map(h.x_path, h.nnz * 12 + (h.rows + 1) * 4)
    data = np.frombuffer(buf, dtype=np.float64, count=h.nnz)
    indptr = np.frombuffer(buf, dtype=np.int32, count=h.rows + 1, offset=h.nnz * 8)
    indices = np.frombuffer(buf, dtype=np.int32, count=h.nnz, offset=h.nnz * 8 + (h.rows + 1) * 4)
    return sp.csr_array((data, indices, indptr), shape=(h.rows, h.cols), copy=False)


def open_block(h: Handle) -> tuple[Rows, np.ndarray | None] | None:
    """The block as read-only arrays, or None when it is not on this host (a miss)."""
    if h.host != socket.gethostname():
        return None
    try:
        x = _open_x(h)
        w = np.frombuffer(_map(h.w_path, h.rows * 8), dtype=np.float64) if h.w_path else None
    except (OSError, ValueError):  # gone, or not our file (a symlink is not followed)
        return None
    return x, w


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _our_files(pattern: str) -> list[str]:
    """Files of this module matching ``PREFIX + pattern`` in every place blocks may live."""
    dirs = {d for root in ROOTS if (d := private_dir(root, create=False))}
    return [p for d in dirs for p in glob.glob(os.path.join(d, PREFIX + pattern))]


def delete(h: Handle) -> None:
    for path in (h.x_path, h.w_path):
        if path:
            _unlink(path)


def delete_fit(fit_id: str) -> int:
    """Delete every file of one fit on this host (and our directories, if that empties
    them); returns how many files were deleted."""
    deleted = sum(_unlink(p) for p in _our_files(f"{fit_id}-*"))
    remove_empty_dirs()
    return deleted


def remove_empty_dirs() -> None:
    """Remove our private directories that hold nothing (``rmdir`` refuses a directory
    with files: one another fit is writing into stays)."""
    for root in ROOTS:
        directory = private_dir(root, create=False)
        if directory is not None:
            _reaper.remove_dir_if_empty(directory)


def owner_pid(path: str) -> int | None:
    """The pid of the JVM whose fit wrote the file at ``path`` (its name is
    ``<PREFIX><fit id>-<pid>-p<partition>-...``), or None for another name."""
    name = os.path.basename(path)
    if not name.startswith(PREFIX):
        return None
    fields = name[len(PREFIX):].split("-")
    return int(fields[1]) if len(fields) > 2 and fields[1].isdigit() else None


def block_files(pids: set[int] | None = None) -> list[str]:
    """This module's files on this host, sorted; with ``pids``, only those written under one
    of these JVMs."""
    found = _our_files("*-*-p*")
    return sorted(p for p in found if pids is None or owner_pid(p) in pids)


def sweep_orphans() -> int:
    """Delete files left by fits whose executor JVM is gone (killed mid-fit)."""
    removed = 0
    for path in block_files():
        pid = owner_pid(path)
        if pid is not None and not _alive(pid):
            removed += _unlink(path)
    return removed


@dataclass(frozen=True)
class Cleaned:
    """What :func:`clean` did on this host."""

    #: Block files deleted, and their bytes.
    files: int
    bytes: int
    #: Block files left because the JVM that wrote them still runs (a fit may be using them).
    live_files: int
    #: The private directories looked in.
    directories: tuple[str, ...]


def clean(include_live: bool = False) -> Cleaned:
    """Delete this user's block files on this host: those whose JVM has ended, and with
    ``include_live`` also those of running JVMs (a fit that is running loses its blocks and
    recomputes them from its lineage)."""
    dirs = tuple(sorted({d for root in ROOTS if (d := private_dir(root, create=False))}))
    files = size = live = 0
    for path in block_files():
        pid = owner_pid(path)
        if not include_live and pid is not None and _alive(pid):
            live += 1
            continue
        try:
            nbytes = os.lstat(path).st_size
        except OSError:
            continue
        if _unlink(path):
            files, size = files + 1, size + nbytes
    remove_empty_dirs()
    return Cleaned(files, size, live, dirs)
