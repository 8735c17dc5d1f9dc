"""The *pyspark lines* section of the benchmark page: one short run per supported pyspark line
(``benchmarks/results/lines/*.json``), each ours against that line's own built-in KMeans.

Made with each line's venv of the version matrix (``python -m tests.matrix`` builds them)::

    .matrix/3.5/bin/python -m benchmarks.run --grid smoke --cells 2e5,20,20 --m1 2 --m2 12 \\
        --warmup on --repeats 3 --out-dir benchmarks/results/lines --docs-dir /tmp/docs-3.5

(and the same with ``.matrix/4.0`` and the project's ``.venv``, the newest line). The newest
record of every pyspark version is shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LINES = Path(__file__).resolve().parent / "results" / "lines"
COMMAND = ("python -m benchmarks.run --grid smoke --cells 2e5,20,20 --m1 2 --m2 12 "
           "--warmup on --repeats 3 --out-dir benchmarks/results/lines")


def newest_per_version(lines: Path = LINES) -> list[tuple[Path, dict[str, Any]]]:
    """The newest record of each pyspark version, oldest version first."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(lines.glob("*.json")):
        record = json.loads(path.read_text())
        found[record["environment"]["versions"]["pyspark"]] = (path, record)

    def version(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".") if p.isdigit())

    return [found[v] for v in sorted(found, key=version)]


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def section(records: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """The section's lines (none without records)."""
    if not records:
        return []
    lines = [
        "## pyspark lines",
        "",
        "One short run per supported pyspark line, each in that line's venv, ours against that "
        "line's own built-in KMeans on the same data: the cell (2e5, 20, 20), seconds per "
        "iteration from fits of 2 and 12 iterations, medians of 3 rounds "
        f"(`{COMMAND}`). A small cell: an iteration of ours takes 20-50 ms here, so these "
        "ratios carry more noise than the target cells above; they show that every line gets "
        "the fast path, not the size of the gain at scale.",
        "",
        "| pyspark | Java | ours s/iter | mllib | ml row | ml block | ours / best built-in "
        "| centers vs mllib, scikit-learn | commit | result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path, record in records:
        env = record["environment"]
        cell = next(c for c in record["cells"] if c.get("status") == "ok")
        comps = cell["competitors"]

        def per_iter(name: str, comps: dict[str, Any] = comps) -> float | None:
            return comps.get(name, {}).get("per_iter")

        ratio = cell.get("ratio_to_best_builtin")
        check = cell.get("centers_check") or {}
        worst = check.get("max_rel_diff")
        lines.append(
            f"| {env['versions']['pyspark']} | {env['versions'].get('java')} | "
            f"{_s(per_iter('ours'))} | {_s(per_iter('mllib'))} | {_s(per_iter('ml_row'))} | "
            f"{_s(per_iter('ml_block'))} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} ({cell.get('best_builtin')}) | "
            f"{'-' if worst is None else f'{worst:.1e}'} | "
            f"`{(env.get('git', {}).get('commit') or '?')[:12]}` | "
            f"`benchmarks/results/lines/{path.name}` |")
    lines.append("")
    return lines
