"""Host-local block storage on its own (no Spark, no Java): round trip, misses, clean-up.
(Blocks lost inside a fit on Spark: tests/test_lineage.py.)"""

import os
import subprocess
import sys

import numpy as np

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
