"""The Examples blocks of the public classes run as doctests."""

import doctest

import pytest

import sparkml_lloyd
from sparkml_lloyd import choosing_k, clustering


@pytest.mark.parametrize("module", [sparkml_lloyd, clustering, choosing_k],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(spark, module):
    result = doctest.testmod(module, extraglobs={"spark": spark}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module is clustering:
        assert result.attempted >= 10
    if module is choosing_k:
        assert result.attempted >= 6
