"""Estimate before allocating: what a fit will hold, against what each place has (no Spark).

A fit's only dense ``k x d`` objects are the centers and what is computed from them: on the
driver the centers, the updated centers, the merged sums and one partial result per
partition; in every task that runs a pass the centers it receives, ``-2 x centers`` and its
transposed copy, the partial sums and a chunk of scores. With text-sized features (``d`` in
the hundreds of thousands) these, not the data, decide whether a fit fits: 100 centers of
2^18 features are 210 MB each time. :func:`check` compares the estimate with what the driver
process, the driver's JVM heap and every executor host have, and raises a ``ValueError``
saying which figure is too large and what to change, before any of it is allocated.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

#: Share of the available memory a fit may plan to use.
SAFETY = 0.8
#: Copies of the ``k x d`` centers a task holds during a pass (see the module docstring).
TASK_COPIES = 4
#: Copies on the driver besides the partitions' partial results.
DRIVER_COPIES = 4


def available_bytes() -> int:
    """Memory this host can give without swapping (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fmt(n: float) -> str:
    """Bytes for people: ``1.5 GiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass
class Hosts:
    """What the preparation pass saw on each executor host: the memory left after its blocks
    were written (the smallest report) and the block bytes written there."""

    available: dict[str, int] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, set[int]] = field(default_factory=dict)
    #: The directories the blocks went to, per host.
    places: dict[str, set[str]] = field(default_factory=dict)

    def report(self, host: str, available: int, block_bytes: int,
               partitions: set[int], places: set[str] | None = None) -> None:
        self.available[host] = min(available, self.available.get(host, available))
        self.blocks[host] = self.blocks.get(host, 0) + block_bytes
        self.partitions[host] = self.partitions.get(host, set()) | partitions
        self.places[host] = self.places.get(host, set()) | (places or set())

    def add(self, other: Hosts) -> None:
        for host, available in other.available.items():
            self.report(host, available, other.blocks.get(host, 0),
                        other.partitions.get(host, set()), other.places.get(host))

    @classmethod
    def here(cls, block_bytes: int, partition: int, place: str | None = None) -> Hosts:
        """A report of this host by the task of ``partition``, after writing
        ``block_bytes`` into the directory ``place``."""
        hosts = cls()
        hosts.report(socket.gethostname(), available_bytes(), block_bytes, {partition},
                     {place} if place else None)
        return hosts

    def describe(self) -> str:
        """Where the blocks are, for the log: ``host-a: 61.0 MiB in /dev/shm/...; ...``."""
        return "; ".join(f"{host}: {fmt(size)} in {', '.join(sorted(self.places[host])) or '-'}"
                         for host, size in sorted(self.blocks.items()))


@dataclass(frozen=True)
class Plan:
    """The sizes of one fit: ``k`` centers of ``d`` features, the largest dense candidate
    set of the initialisation (0 when the candidates are sparse rows), the rows of a chunk of
    scores, and the bytes of one pass's partial results of all partitions (``k x d`` each
    for dense blocks; for CSR blocks their sparse sums, at most the blocks' non-zeros)."""

    k: int
    d: int
    candidates: int
    chunk_rows: int
    results: int
    #: How many fits advance together (``fitMultiple``): ``k`` is then their centers in all.
    fits: int = 1

    @property
    def centers(self) -> int:
        return max(self.k, self.candidates) * self.d * 8

    @property
    def task(self) -> int:
        return TASK_COPIES * self.centers + self.chunk_rows * max(self.k, self.candidates) * 8

    @property
    def driver(self) -> int:
        return DRIVER_COPIES * self.centers + self.results

    @property
    def jvm(self) -> int:
        """The driver JVM's share when passes run as Spark jobs: the broadcast centers and
        the partitions' collected results."""
        return self.centers + self.results


def _too_large(what: str, need: int, where: str, have: int, plan: Plan) -> ValueError:
    centers, smaller = ((f"k={plan.k} centers", "a smaller k") if plan.fits == 1 else
                        (f"the {plan.fits} models' {plan.k} centers in all",
                         "fewer param maps or smaller k values"))
    return ValueError(
        f"This fit would need about {fmt(need)} {what} on {where}, more than the "
        f"{fmt(SAFETY * have)} it can use there ({SAFETY:.0%} of {fmt(have)} available): "
        f"{centers} of {plan.d} features take {fmt(plan.k * plan.d * 8)}, and that "
        "many bytes are held several times over. Use fewer features (e.g. a smaller "
        f"numFeatures for HashingTF, or a feature selection), {smaller}, or more memory "
        "(spark.driver.memory, more or larger executors)."
    )


def check(plan: Plan, driver_available: int, jvm_available: int | None,
          hosts: Hosts | None, driver_host: str | None = None) -> None:
    """Raise a ``ValueError`` when the plan does not fit. ``hosts`` is None before the
    preparation pass (only the driver's side is checked then); on a host that also runs the
    driver (local mode) the driver's share counts there too."""
    if plan.driver > SAFETY * driver_available:
        raise _too_large("for the centers and partial results", plan.driver,
                         "the driver", driver_available, plan)
    if jvm_available is not None and plan.jvm > SAFETY * jvm_available:
        raise _too_large("of the driver's JVM heap", plan.jvm, "the driver JVM",
                         jvm_available, plan)
    for host, available in (hosts.available if hosts else {}).items():
        tasks = len(hosts.partitions.get(host, ()))  # the executor loop runs one per partition
        need = tasks * plan.task + (plan.driver if host == driver_host else 0)
        if need > SAFETY * available:
            raise _too_large("for the passes' copies of the centers", need,
                             f"executor host {host!r}", available, plan)
