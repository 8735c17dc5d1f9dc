"""Host-local block storage on its own (no Spark, no Java): round trip, misses, clean-up.
(Blocks lost inside a fit on Spark: tests/test_lineage.py.)"""

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from sparkml_lloyd import _blockstore as bs


def test_write_open_delete_round_trip():
    x = np.arange(12.0).reshape(4, 3)
    w = np.array([1.0, 0.0, 2.0, 3.0])
    h = bs.write("roundtrip0", 3, x, w)
    got_x, got_w = bs.open_block(h)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_w, w)
    assert not got_x.flags.writeable  # tasks cannot corrupt the shared copy
    bs.delete(h)
    assert bs.open_block(h) is None and not os.path.exists(h.x_path)


def test_a_block_of_another_host_or_a_deleted_file_is_a_miss():
    h = bs.write("miss0", 0, np.ones((2, 2)), None)
    assert bs.open_block(bs.Handle("elsewhere", h.x_path, None, 2, 2)) is None
    assert bs.delete_fit("miss0") == 1
    assert bs.open_block(h) is None


def test_files_of_a_dead_jvm_are_swept(monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with monkeypatch.context() as m:  # a block written under a JVM that has died since
        m.setattr(bs, "_jvm_pid", lambda: dead.pid)
        orphan = bs.write("orphan0", 0, np.ones((1, 3)), None)
    assert bs.owner_pid(orphan.x_path) == dead.pid
    live = bs.write("live0", 0, np.ones((1, 1)), None)  # this process's parent is alive
    bs.sweep_orphans()
    assert not os.path.exists(orphan.x_path)
    assert os.path.exists(live.x_path)
    bs.delete(live)


def test_block_files_are_private_and_new():
    """Mode 0600 files in a 0700 directory of this user; 64 random bits in every name."""
    x = np.ones((3, 2))
    a, b = bs.write("private0", 0, x, np.ones(3)), bs.write("private0", 0, x, None)
    try:
        directory = os.path.dirname(a.x_path)
        st = os.lstat(directory)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
        assert st.st_uid == os.getuid()
        for path in (a.x_path, a.w_path, b.x_path):
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert a.x_path != b.x_path  # same fit, partition and JVM: the random part differs
        assert len(a.x_path.rsplit("-", 2)[-2]) == 16
    finally:
        bs.delete(a)
        bs.delete(b)


def test_a_planted_symlink_is_never_followed(tmp_path, monkeypatch):
    """A symlink planted where our directory goes makes us use the next place (the target is
    untouched); one planted at a file's name (its random part forced here) makes the write
    fail rather than write through it, and a block path that is a symlink reads as a miss."""
    target = tmp_path / "target"
    target.mkdir()
    shm, tmp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir()
    tmp.mkdir()
    monkeypatch.setattr(bs, "ROOTS", (str(shm), str(tmp)))
    (shm / f"{bs.PREFIX}{os.getuid()}").symlink_to(target)
    h = bs.write("planted0", 0, np.ones((2, 2)), None)
    assert os.path.dirname(h.x_path) == str(tmp / f"{bs.PREFIX}{os.getuid()}")
    assert list(target.iterdir()) == []

    monkeypatch.setattr(bs.secrets, "token_hex", lambda n: "0" * 2 * n)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    planted = os.path.join(os.path.dirname(h.x_path),
                           f"{bs.PREFIX}planted1-{bs._jvm_pid()}-p0-{'0' * 16}-x.bin")
    os.symlink(victim, planted)
    with pytest.raises(FileExistsError):
        bs.write("planted1", 0, np.ones((2, 2)), None)
    assert victim.read_bytes() == b"keep"
    assert bs.open_block(bs.Handle(h.host, planted, None, 1, 1)) is None
    bs.delete(h)
    os.unlink(planted)


def test_no_private_place_is_a_clear_error(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / f"{bs.PREFIX}{os.getuid()}").mkdir(mode=0o755)
    os.chmod(root / f"{bs.PREFIX}{os.getuid()}", 0o755)  # readable by others: not ours alone
    monkeypatch.setattr(bs, "ROOTS", (str(root),))
    with pytest.raises(PermissionError, match=r"mode 0700.*TMPDIR"):
        bs.write("nowhere0", 0, np.ones((1, 1)), None)


def test_the_files_of_a_jvm_go_when_it_dies_without_another_fit(monkeypatch):
    """The first block a JVM writes on a host starts one watcher (however many blocks follow);
    when that JVM is killed, its files are deleted within seconds (no fit runs), the watcher
    ends, and another JVM's files stay."""
    from sparkml_lloyd import _reaper

    jvm = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    monkeypatch.setattr(bs, "_jvm_pid", lambda: jvm.pid)
    try:
        a = bs.write("reaped0", 0, np.ones((2, 2)), np.ones(2))
        b = bs.write("reaped0", 1, np.ones((2, 2)), None)
        marker = bs.watch_marker(os.path.dirname(a.x_path), jvm.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not Path(marker).read_text():
            time.sleep(0.05)
        watcher = int(Path(marker).read_text())
        assert _reaper.start_time(watcher) is not None
        # a daemon: its own session, run from / (not the executor's working directory, which
        # Spark deletes, and by which a cluster's stop would take it for one of its processes)
        assert psutil.Process(watcher).cwd() == "/"
        assert os.getsid(watcher) != os.getsid(0)
        jvm.kill()
        jvm.wait()
        killed = time.monotonic()
        while bs.block_files({jvm.pid}) and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert bs.block_files({jvm.pid}) == []
        assert not any(map(os.path.exists, (a.x_path, a.w_path, b.x_path)))
        print(f"deleted {time.monotonic() - killed:.1f} s after the kill")
        while _reaper.start_time(watcher) is not None and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert _reaper.start_time(watcher) is None and not os.path.exists(marker)
    finally:
        jvm.kill()


def test_clean_deletes_what_is_asked_and_says_what_it_freed(monkeypatch):
    """``sparkml_lloyd.clean()`` and ``sparkml-lloyd clean`` delete the files of ended JVMs,
    leave a running one's, and say what they freed. (``include_live`` is not tried here: other
    test processes may be fitting.)"""
    import sparkml_lloyd

    def orphan(name: str) -> bs.Handle:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with monkeypatch.context() as m:
            m.setattr(bs, "_jvm_pid", lambda: dead.pid)
            return bs.write(name, 0, np.ones((4, 2)), np.ones(4))  # 64 + 32 bytes

    first = orphan("clean0")
    live = bs.write("clean1", 0, np.ones((1, 1)), None)  # this process's: alive
    done = sparkml_lloyd.clean()
    assert done.files >= 2 and done.bytes >= 96 and done.live_files >= 1
    assert os.path.exists(live.x_path) and not os.path.exists(first.x_path)
    second = orphan("clean2")
    out = subprocess.run([sys.executable, "-m", "sparkml_lloyd", "clean"],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("deleted ") and " MiB) in " in out.stdout
    assert os.path.dirname(second.x_path) in out.stdout and "(--all deletes them)" in out.stdout
    assert not os.path.exists(second.x_path) and os.path.exists(live.x_path)
    bs.delete(live)


class _FullDisks:
    """``os`` for the block store, with directories that take only ``room`` bytes each: a
    write past that fails with ENOSPC, as on a full tmpfs (the seam: the files are real)."""

    def __init__(self, room: dict[str, int]) -> None:
        self.room = room

    def __getattr__(self, name: str):
        return getattr(os, name)

    def fdopen(self, fd: int, mode: str):
        f = os.fdopen(fd, mode)
        path = os.readlink(f"/proc/self/fd/{fd}")
        left = next((r for d, r in self.room.items() if path.startswith(d)), None)
        if left is None:
            return f
        room = self.room

        class Limited:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                nonlocal left
                n = memoryview(data).nbytes
                if n > left:
                    f.write(memoryview(data).cast("B")[:left])
                    raise OSError(errno.ENOSPC, "No space left on device")
                left -= n
                room[next(d for d in room if path.startswith(d))] = left
                return f.write(data)

        return Limited()


def test_a_block_that_does_not_fit_goes_to_the_next_place_or_says_why(tmp_path, monkeypatch):
    """The first place is full: the block goes to the temp dir's, and nothing is left in the
    first; both are full: one ENOSPC error saying what was needed and how much each place
    had, and no partial file anywhere."""
    shm, tmp = tmp_path / "shm", tmp_path / "tmp"
    shm.mkdir()
    tmp.mkdir()
    monkeypatch.setattr(bs, "ROOTS", (str(shm), str(tmp)))
    monkeypatch.setattr(bs, "os", _FullDisks({str(shm): 100, str(tmp): 10_000}))
    x = np.ones((50, 4))  # 1,600 bytes
    h = bs.write("full0", 0, x, np.ones(50))
    assert h.x_path.startswith(str(tmp))
    assert list((shm / f"{bs.PREFIX}{os.getuid()}").iterdir()) == []
    np.testing.assert_array_equal(bs.open_block(h)[0], x)
    with pytest.raises(bs.NoRoom) as err:
        bs.write("full1", 0, np.ones((2000, 4)), None)  # 64,000 bytes
    assert err.value.errno == errno.ENOSPC
    message = str(err.value)
    assert "no room for a block file of 62.5 KiB on host" in message and "\n" not in message
    assert f"{shm}/{bs.PREFIX}{os.getuid()} has " in message and "TMPDIR" in message
    assert [p.name for d in (shm, tmp) for p in (d / f"{bs.PREFIX}{os.getuid()}").iterdir()
            if "full1" in p.name] == []
    bs.delete(h)


def test_blocks_without_room_stop_the_fit_with_one_line():
    """What the preparation pass found (two blocks without room) ends the fit before any
    iteration: one ENOSPC line, the first block's reason."""
    from sparkml_lloyd import _fit
    from sparkml_lloyd._prepare import Findings

    found = Findings(rows=10, lengths={4})
    found.no_room = ["no room for a block file of 1.0 GiB on host 'a': /dev/shm/x has 2 MiB "
                     "free", "no room for a block file of 1.0 GiB on host 'b': ..."]
    cfg = _fit.FitConfig(k=2, max_iter=5, tol=0.0, seed=1, init_mode="random", init_steps=2,
                         distance="euclidean", features_col="features", weight_col=None,
                         handle_invalid="error", initial_centers=None)
    with pytest.raises(OSError) as err:
        _fit.check_data(found, cfg)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == ("[Errno 28] 2 of the data's blocks found no room; the first: no "
                              "room for a block file of 1.0 GiB on host 'a': /dev/shm/x has "
                              "2 MiB free")
