"""The support matrix: every method on every architecture of tests/archs.py (see tests/matrix.py)."""

from __future__ import annotations

import pytest
from archs import MODELS
from matrix import run_cell

from slimkit.compress import METHODS

pytest.importorskip("transformers")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", list(METHODS))
def test_cell(method, name, tmp_path):
    run_cell(method, name, tmp_path)
