"""Block preparation: a partition's Arrow batches become numpy blocks (executor side, no Spark
calls), and what the pass found about the rows becomes the fit's verdict (driver side).

One pass over the data does everything the fit needs to know before it iterates: it reads the
rows (:func:`sparkml_lloyd._arrow.read_rows`: invalid rows are counted and left out of the
block, which is dense or CSR by its density), checks the weights, scales rows to unit length
for the cosine measure, draws the seeding sample, and writes each block once to host-local storage
(:mod:`sparkml_lloyd._blockstore`). The driver merges the per-block :class:`Findings` and
raises, before any iteration, for anything that makes the data unusable.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from sparkml_lloyd import _arrow, _memory, _rows
from sparkml_lloyd import _blockstore as blockstore
from sparkml_lloyd import _kernel as K
from sparkml_lloyd import _seeding as S

#: Rows per block: big enough for BLAS, small enough to pickle cheaply.
BLOCK_ROWS = 65536
#: ... and at most this many bytes of features per block.
BLOCK_BYTES = 32 << 20
#: Random stream of :func:`sparkml_lloyd._kernel.row_keys` for the seeding sample (the first
#: k-means|| center and the "random" initialisation).
STREAM_SAMPLE = 0

#: The Arrow schema of the preparation pass's output: one pickled payload per block.
OUTPUT_SCHEMA = "blob binary"


@dataclass
class Findings:
    """What the preparation pass found in one block (or, merged, in the whole data)."""

    rows: int = 0  # valid rows, the ones in the blocks
    invalid: dict[int, int] = field(default_factory=dict)  # verdict -> rows left out
    lengths: set[int] = field(default_factory=set)
    w_null: int = 0
    w_negative: int = 0
    w_nonfinite: int = 0
    w_sum: float = 0.0
    sample_x: list[K.Rows] = field(default_factory=list)
    sample_keys: list[np.ndarray] = field(default_factory=list)
    dense_blocks: int = 0
    hosts: _memory.Hosts = field(default_factory=_memory.Hosts)
    #: Why blocks found no room on their hosts (:class:`~sparkml_lloyd._blockstore.NoRoom`).
    no_room: list[str] = field(default_factory=list)

    def add(self, other: Findings) -> None:
        self.hosts.add(other.hosts)
        for name in ("rows", "w_null", "w_negative", "w_nonfinite", "w_sum", "dense_blocks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, count in other.invalid.items():
            self.invalid[kind] = self.invalid.get(kind, 0) + count
        self.lengths |= other.lengths
        self.sample_x += other.sample_x
        self.sample_keys += other.sample_keys
        self.no_room += other.no_room

    @classmethod
    def merged(cls, parts: Iterable[Findings]) -> Findings:
        total = cls()
        for part in parts:
            total.add(part)
        return total


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def read_block(
    table: pa.Table, has_weight: bool, cosine: bool
) -> tuple[K.Rows, np.ndarray | None, Findings]:
    """The valid rows of one batch group as a block ``(x, w)`` (dense or CSR; cosine: unit
    rows), and the findings. Invalid rows are left out of the block and counted."""
    features = {name: table.column(name) for name in table.column_names if name != "w"}
    x, verdict, lengths = _arrow.read_columns(features, None, cosine)
    found = Findings(invalid=_rows.counts(verdict), lengths=lengths, rows=x.shape[0])
    w = None
    if has_weight:
        wcol = table.column("w").combine_chunks()
        keep = verdict == _rows.VALID
        found.w_null = int((_np(wcol.is_null()) & keep).sum())
        w = np.asarray(_np(wcol.fill_null(0.0)), dtype=np.float64)[keep]
        found.w_negative = int((w < 0).sum())
        found.w_nonfinite = int((~np.isfinite(w)).sum())
        found.w_sum = float(w[np.isfinite(w)].sum())
    else:
        found.w_sum = float(x.shape[0])
    if cosine and x.shape[0]:
        x = K.normalize_rows(x)
    return x, w, found


def blocks_of(
    batches: Iterable[pa.RecordBatch], has_weight: bool, cosine: bool,
    seed: int | None = None, sample_size: int = 0,
) -> Iterator[tuple[K.Rows, np.ndarray | None, Findings]]:
    """The blocks of a partition's Arrow batches, in order: ``(x, w, findings)`` for every
    group of up to :data:`BLOCK_ROWS` rows (or :data:`BLOCK_BYTES`). With ``seed``, each
    block's findings carry its share of the seeding sample: the ``sample_size`` rows of
    weight > 0 with the smallest content keys."""
    pending: list[pa.RecordBatch] = []
    rows = 0

    def flush() -> tuple[K.Rows, np.ndarray | None, Findings]:
        x, w, found = read_block(pa.Table.from_batches(pending), has_weight, cosine)
        found.dense_blocks = int(x.shape[0] > 0 and not sp.issparse(x))
        if seed is not None:
            eligible = x if w is None else x[w > 0]
            sx, sk = S.lowest_keys(eligible, S.row_keys(eligible, seed, STREAM_SAMPLE),
                                   sample_size)
            found.sample_x, found.sample_keys = [sx], [sk]
        return x, w, found

    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows >= BLOCK_ROWS or sum(b.nbytes for b in pending) >= BLOCK_BYTES:
            yield flush()
            pending, rows = [], 0
    if pending:
        yield flush()


def block_bytes(x: K.Rows, w: np.ndarray | None) -> int:
    """Bytes a block holds (its values, indices and row pointers; its weights)."""
    held = (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) if sp.issparse(x) else x.nbytes
    return held + (w.nbytes if w is not None else 0)


def prepare_partition(
    batches: Iterable[pa.RecordBatch],
    partition: int,
    has_weight: bool,
    cosine: bool,
    seed: int,
    sample_size: int,
    fit_id: str | None,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: the Arrow batches of one partition -> blocks, one output row each.

    With ``fit_id`` (the fit's first pass) every non-empty block is written to host-local
    storage, and the row holds ``(Handle, Findings)`` with the block's share of the seeding
    sample; without it (the lineage path, used when a block is missing) the row holds the
    block itself, ``(x, w)``: the same rows, read the same way.
    """
    if fit_id is not None:
        blockstore.sweep_orphans()
    for x, w, found in blocks_of(batches, has_weight, cosine,
                                 None if fit_id is None else seed, sample_size):
        payload: tuple[Any, Any]
        if fit_id is None:
            payload = (x, w)
        else:
            usable = len(found.lengths) <= 1 and x.shape[0] > 0
            try:
                handle = blockstore.write(fit_id, partition, x, w) if usable else None
            except blockstore.NoRoom as e:  # the driver says so, in one line, for all
                found.no_room.append(e.strerror)
                handle = None
            found.hosts = _memory.Hosts.here(handle.nbytes if handle else 0, partition,
                                             os.path.dirname(handle.x_path) if handle else None)
            payload = (handle, found)
        blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        yield pa.RecordBatch.from_arrays([pa.array([blob], pa.binary())], ["blob"])


def raise_for_data(found: Findings, features_col: str, weight_col: str | None,
                   handle_invalid: str) -> None:
    """A ``ValueError`` for anything in the merged findings that makes the data unusable:
    invalid rows under ``handleInvalid="error"``, vectors of several lengths, no rows, bad
    weights."""
    col = features_col
    if len(found.lengths) > 1:
        raise ValueError(
            f"featuresCol={col!r} holds vectors of different lengths {sorted(found.lengths)}; "
            "every row must have the same number of features."
        )
    d = next(iter(found.lengths), None)
    if handle_invalid == _rows.ERROR:
        for kind in _rows.ORDER:
            if found.invalid.get(kind):
                raise ValueError(_rows.message(kind, col, d, found.invalid[kind]))
    if found.rows == 0:
        left_out = sum(found.invalid.values())
        raise ValueError(
            "The DataFrame has no rows: there is nothing to cluster. Check the filters "
            "or the input path upstream." if not left_out else
            f"featuresCol={col!r} has no valid rows: all {left_out} were left out by "
            f"handleInvalid={handle_invalid!r}."
        )
    if d == 0:
        raise ValueError(f"featuresCol={col!r} holds empty vectors (0 features).")
    if weight_col:
        _raise_for_weights(found, weight_col)


def _raise_for_weights(found: Findings, wcol: str) -> None:
    if found.w_null:
        raise ValueError(
            f"weightCol={wcol!r} has {found.w_null} null values. Fill them (e.g. with 1.0) "
            "or drop those rows."
        )
    if found.w_nonfinite:
        raise ValueError(
            f"weightCol={wcol!r} has {found.w_nonfinite} NaN or infinite values; weights "
            "must be finite numbers >= 0."
        )
    if found.w_negative:
        raise ValueError(
            f"weightCol={wcol!r} has {found.w_negative} negative values; weights must be "
            ">= 0."
        )
    if found.w_sum <= 0:
        raise ValueError(
            f"weightCol={wcol!r} is zero for every row; at least one weight must be > 0."
        )
