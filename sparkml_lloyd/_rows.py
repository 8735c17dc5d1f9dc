"""The row rule: which feature rows k-means can use, decided once for every path (no Spark).

A row is **invalid** when it is null, has another number of features than the model, holds a
NaN or an infinite value (a null element inside an array counts as NaN), or is all zeros under
the cosine measure (its squared norm is 0, as Spark's ``Vectors.norm`` finds it: no
direction). Every path applies this rule and gives the same verdict:
``fit`` (the preparation pass), ``LloydKMeansModel.predict``, and both ``transform`` paths
(the numpy kernel in an Arrow UDF, here; Spark's own scorer in the JVM, under the same
rule written as Spark Columns in :mod:`sparkml_lloyd._predict_spark`). What happens to an
invalid row is the ``handleInvalid`` Param's choice (:data:`HANDLE_INVALID`): ``"error"``
(the default) raises, ``"skip"`` drops the row, ``"keep"`` gives it a null prediction (fit
leaves it out under both).

This module holds the verdicts, how they are worded, and the rule on a dense matrix
(:func:`judge`); :mod:`sparkml_lloyd._arrow` applies it to the Arrow rows every path reads.
"""

from __future__ import annotations

import numpy as np

from sparkml_lloyd._kernel import row_norms_sq

#: ``handleInvalid`` values: raise, drop the row, or predict null for it.
ERROR, SKIP, KEEP = "error", "skip", "keep"
HANDLE_INVALID = (ERROR, SKIP, KEEP)

#: Verdicts, one ``int8`` per row.
VALID, NULL, WRONG_LENGTH, NON_FINITE, ZERO_COSINE = 0, 1, 2, 3, 4

#: What each invalid kind is, as the messages say it: of many rows, and of one (``{d}``: the
#: model's number of features).
WHAT = {
    NULL: ("null rows", "is null"),
    WRONG_LENGTH: ("rows whose vectors do not have {d} features", "does not have {d} features"),
    NON_FINITE: ("rows with NaN, infinite or null values (a null inside an array counts as NaN)",
                 "has NaN, infinite or null values"),
    ZERO_COSINE: ("all-zero vectors, for which the cosine distance is undefined",
                  "is all zeros, for which the cosine distance is undefined"),
}
#: How to clean each kind up front.
FIX = {
    NULL: "drop them (df.dropna(subset=[{col!r}])) or fill them",
    WRONG_LENGTH: "give every row {d} features",
    NON_FINITE: "drop or impute them (e.g. pyspark.ml.feature.Imputer)",
    ZERO_COSINE: "drop them or use distanceMeasure='euclidean'",
}
#: The order in which kinds are reported when there are several.
ORDER = (NULL, WRONG_LENGTH, NON_FINITE, ZERO_COSINE)
_OR_HANDLE = ", or set handleInvalid='skip' (drop them) or 'keep' (null prediction; fit " \
    "leaves them out)."


def message(kind: int, col: str | None, d: int | None, count: int | None = None) -> str:
    """The error for invalid rows of one kind: ``count`` of them in ``featuresCol=col`` (fit),
    one row of it (``count`` None: transform), or one vector (``col`` None: ``predict``);
    then the fixes: clean the data, or let ``handleInvalid`` skip or keep them."""
    many, one = (w.format(d=d) for w in WHAT[kind])
    if col is None:
        return (f"The vector {one}; give a valid vector, or set handleInvalid='keep' to get "
                "None for it.")
    subject = (f"featuresCol={col!r} has {count} {many}" if count is not None
               else f"A row of featuresCol={col!r} {one}")
    fix = FIX[kind].format(col=col, d=d)
    return f"{subject}. {fix[:1].upper()}{fix[1:]}{_OR_HANDLE}"


def judge(x: np.ndarray, cosine: bool) -> np.ndarray:
    """The verdict of every row of a dense matrix whose rows have the right length:
    :data:`VALID`, :data:`NON_FINITE` or (cosine only) :data:`ZERO_COSINE`."""
    verdict = np.zeros(x.shape[0], dtype=np.int8)
    if x.shape[0] == 0:
        return verdict
    # A NaN or an infinity makes its row's sum NaN or infinite; a sum of finite values can
    # overflow too, so those rows are checked value by value. (One BLAS product: ~8x faster
    # than checking every value of every row.)
    with np.errstate(over="ignore", invalid="ignore"):
        suspect = np.flatnonzero(~np.isfinite(x @ np.ones(x.shape[1])))
    if suspect.size:
        verdict[suspect[~np.isfinite(x[suspect]).all(axis=1)]] = NON_FINITE
    if cosine:  # a NaN or infinite row has a norm that is not 0
        with np.errstate(over="ignore", invalid="ignore"):
            verdict[row_norms_sq(x) == 0.0] = ZERO_COSINE
    return verdict


def first_problem(verdict: np.ndarray) -> int | None:
    """The first invalid kind present (in :data:`ORDER`), or None when every row is valid."""
    present = set(np.unique(verdict).tolist()) - {VALID}
    return next((kind for kind in ORDER if kind in present), None)


def counts(verdict: np.ndarray) -> dict[int, int]:
    """How many rows of each invalid kind (kinds with none are left out)."""
    found = np.bincount(verdict, minlength=len(ORDER) + 1)
    return {kind: int(found[kind]) for kind in ORDER if found[kind]}
