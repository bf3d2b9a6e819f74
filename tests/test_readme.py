"""The README's API example runs as written (slow: it trains the real teacher and SortedNet)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path, monkeypatch):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    import numpy as np

    namespace = {"x": np.zeros((4, 1, 40), dtype=np.float32)}  # the example's input batch
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["engine"].last in namespace["fam"].names
    assert namespace["y"].shape == (4, 10)
