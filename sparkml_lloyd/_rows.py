"""The row rule: which feature rows k-means can use, decided once for every path (no Spark).

A row is **invalid** when it is null, has another number of features than the model, holds a
NaN or an infinite value (a null element inside an array counts as NaN), or is all zeros under
the cosine measure (its squared norm is 0, as Spark's ``Vectors.norm`` finds it: no
direction). Every path applies this rule and gives the same verdict:
``fit`` (the preparation pass), ``LloydKMeansModel.predict``, and both ``transform`` paths
(the numpy kernel in an Arrow UDF, here; Spark's assignment UDF in the JVM, under the same
rule written as a Spark Column in :mod:`sparkml_lloyd._predict_jvm`). What happens to an
invalid row is the ``handleInvalid`` Param's choice (:data:`HANDLE_INVALID`): ``"error"``
(the default) raises, ``"skip"`` drops the row, ``"keep"`` gives it a null prediction (fit
leaves it out under both).

This module turns a ``list<double>`` Arrow array (the form every path reads rows in) into a
matrix of the usable rows plus a verdict per row, and words the messages.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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
    verdict[~np.isfinite(x).all(axis=1)] = NON_FINITE
    if cosine:  # a NaN or infinite row has a norm that is not 0
        with np.errstate(over="ignore", invalid="ignore"):
            verdict[row_norms_sq(x) == 0.0] = ZERO_COSINE
    return verdict


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def read_rows(
    arr: pa.Array | pa.ChunkedArray, d: int | None, cosine: bool
) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """Rows of a ``list<double>`` Arrow array, judged by the rule.

    ``d`` is the model's number of features; ``None`` (fit) takes it from the rows when they
    all have one length. Returns ``(x, verdict, lengths)``: the valid rows as a ``(m, d)``
    float64 matrix in input order, the verdict of every input row, and the distinct lengths of
    the non-null rows (fit reports more than one as an error of the column, whatever
    ``handleInvalid`` says: no row is the "wrong" one).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    verdict = np.zeros(n, dtype=np.int8)
    nulls = _np(arr.is_null())
    verdict[nulls] = NULL
    lengths = _np(arr.value_lengths().fill_null(-1))
    distinct = set(np.unique(lengths[~nulls]).tolist())
    if d is None:
        d = next(iter(distinct)) if len(distinct) == 1 else None
    if d is None:  # no rows, or several lengths: nothing is read
        verdict[~nulls] = WRONG_LENGTH if distinct else VALID
        return np.empty((0, 0)), verdict, distinct
    sized = ~nulls & (lengths == d)
    verdict[~nulls & ~sized] = WRONG_LENGTH
    rows = arr if sized.all() else arr.filter(pa.array(sized))
    # Null elements inside a vector come through as NaN and are judged non-finite.
    x = np.asarray(_np(rows.flatten()), dtype=np.float64).reshape(len(rows), d)
    judged = judge(x, cosine)
    verdict[sized] = judged
    return (x if not judged.any() else x[judged == VALID]), verdict, distinct


def first_problem(verdict: np.ndarray) -> int | None:
    """The first invalid kind present (in :data:`ORDER`), or None when every row is valid."""
    present = set(np.unique(verdict).tolist()) - {VALID}
    return next((kind for kind in ORDER if kind in present), None)


def counts(verdict: np.ndarray) -> dict[int, int]:
    """How many rows of each invalid kind (kinds with none are left out)."""
    found = np.bincount(verdict, minlength=len(ORDER) + 1)
    return {kind: int(found[kind]) for kind in ORDER if found[kind]}
