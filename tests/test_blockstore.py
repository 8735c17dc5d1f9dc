"""Host-local block storage on its own (no Spark, no Java): round trip, misses, clean-up.
(Blocks lost inside a fit on Spark: tests/test_lineage.py.)"""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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
        marker = _reaper._marker(os.path.dirname(a.x_path), jvm.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not Path(marker).read_text():
            time.sleep(0.05)
        watcher = int(Path(marker).read_text())
        assert _reaper.start_time(watcher) is not None
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
