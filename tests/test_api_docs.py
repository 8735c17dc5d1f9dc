"""docs/api.md is hand-written; these checks keep it in step with the code.

* Every public method, property and param of ``LloydKMeans``, ``LloydKMeansModel``,
  ``LloydKMeansSummary`` and ``IterationRecord`` defined in this package (or in pyspark's
  shared param mixins, which provide ``getTol``, ``maxIter`` ...) is mentioned in a code span
  of its class's section.
  The model's params and getters are the estimator's and are documented once, there.
* Every ``Class.member`` the page names in a code span exists.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from sparkml_lloyd import IterationRecord, LloydKMeans, LloydKMeansModel, LloydKMeansSummary

API = Path(__file__).resolve().parent.parent / "docs" / "api.md"
CLASSES = (LloydKMeans, LloydKMeansModel, LloydKMeansSummary, IterationRecord)
DOCUMENTED_MODULES = ("sparkml_lloyd", "pyspark.ml.param.shared")


def public_members(cls: type) -> set[str]:
    names = set()
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next(base for base in cls.__mro__ if name in vars(base))
        if owner.__module__.startswith(DOCUMENTED_MODULES):
            names.add(name)
    if cls is LloydKMeansSummary:  # plain attributes, set in __init__
        names |= set(inspect.signature(cls.__init__).parameters) - {"self"}
    if dataclasses.is_dataclass(cls):
        names |= {f.name for f in dataclasses.fields(cls)}
    return names


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def section(text: str, cls: type) -> str:
    """The text from ``## `Class` `` to the next level-2 heading."""
    match = re.search(rf"^## `{cls.__name__}`$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/api.md has no section '## `{cls.__name__}`'"
    return match.group(1)


def identifiers(text: str) -> set[str]:
    return {word for span in code_spans(text) for word in re.findall(r"[A-Za-z_]\w*", span)}


@pytest.fixture(scope="module")
def api_text() -> str:
    return API.read_text(encoding="utf-8")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_public_member_is_documented(api_text, cls):
    mentioned = identifiers(section(api_text, cls))
    if cls is LloydKMeansModel:
        estimator = LloydKMeans()
        shared = {p.name for p in estimator.params}
        shared |= {n for n in public_members(LloydKMeans) if n.startswith("get")}
        mentioned |= shared & identifiers(section(api_text, LloydKMeans))
    missing = sorted(public_members(cls) - mentioned)
    assert not missing, f"{cls.__name__} members missing from docs/api.md: {missing}"


def test_every_documented_member_exists(api_text):
    by_name = {cls.__name__: cls for cls in CLASSES}
    fields = public_members(LloydKMeansSummary) | public_members(IterationRecord)
    named = {
        (owner, member)
        for span in code_spans(api_text)
        for owner, member in re.findall(
            r"\b(LloydKMeans(?:Model|Summary)?|IterationRecord)\.(\w+)", span)
    }
    assert len(named) > 40
    unknown = sorted(
        f"{owner}.{member}" for owner, member in named
        if not hasattr(by_name[owner], member)
        and not (owner in ("LloydKMeansSummary", "IterationRecord") and member in fields)
    )
    assert not unknown, f"docs/api.md names members that do not exist: {unknown}"


def test_public_members_are_found():
    """Guard the guard: the introspection sees the members it must."""
    assert {"setK", "getTol", "maxIter", "clearInitialCenters"} <= public_members(LloydKMeans)
    assert {"clusterCenters", "summary", "predict"} <= public_members(LloydKMeansModel)
    assert {"costHistory", "cluster", "trainingCost", "iterations"} <= public_members(
        LloydKMeansSummary)
    assert {"iteration", "maxMove", "seconds"} <= public_members(IterationRecord)
