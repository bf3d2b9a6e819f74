"""The support matrix: every method on every architecture of tests/archs.py, one contract (tests/matrix.py).

A cell passes the whole contract (compress -> Family ordered by cost, each variant runs -> save/load with
equal outputs), or is refused up front as tests/matrix.py's ``REFUSED`` says. Cells in ``SLOW`` run with
``make test-slow``.
"""

from __future__ import annotations

import pytest
from archs import MODELS
from matrix import PENDING, REFUSED, SLOW, run_cell

from slimkit.compress import METHODS

pytest.importorskip("transformers")


def _cells():
    for method in METHODS:
        for name in MODELS:
            marks = [pytest.mark.slow] if (method, name) in SLOW else []
            if (method, name) in PENDING:
                marks.append(pytest.mark.xfail(reason=PENDING[(method, name)], strict=False))
            yield pytest.param(method, name, marks=marks, id=f"{method}-{name}")


@pytest.mark.parametrize(("method", "name"), list(_cells()))
def test_cell(method, name, tmp_path):
    run_cell(method, name, tmp_path)


def test_refusals_are_at_most_a_third_of_the_matrix():
    cells = len(METHODS) * len(MODELS)
    assert set(REFUSED) <= {(m, n) for m in METHODS for n in MODELS}
    assert len(REFUSED) <= cells / 3, f"{len(REFUSED)} of {cells} cells refused"
