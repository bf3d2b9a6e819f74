"""Measured onnxruntime latency as a cost, for searches that optimise real speed (``compress.n2n``).

``compress`` may not import ``export`` (DESIGN.md's dependency rules), so the search takes any
``module -> float`` callable as its cost, and this module builds the one that measures latency.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimkit.runtime.backends import session_options
from slimkit.runtime.errors import ConfigError

from .onnx import to_onnx

__all__ = ["latency_cost"]


def latency_cost(example_input: torch.Tensor, *, threads: int = 1, repeats: int = 30,
                 warmup: int = 5) -> Callable[[nn.Module], float]:
    """A cost function: p50 milliseconds of a module exported to ONNX and run by onnxruntime at batch 1.

    Example:
        >>> fam = compress.n2n(teacher, train=tr, val=va, cost=export.latency_cost(x), budget={"latency": 0.3})
    """
    for name, v in (("threads", threads), ("repeats", repeats), ("warmup", warmup)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "warmup" else 1):
            raise ConfigError(f"{name} must be a positive int, got {v!r}")
    x = example_input[:1].detach()

    def latency(module: nn.Module) -> float:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="slimkit-latency-") as tmp:
            path = to_onnx(module, x, Path(tmp) / "model.onnx")
            sess = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                        providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x.numpy()}
        for _ in range(warmup):
            sess.run(None, feed)
        times = np.empty(repeats)
        for i in range(repeats):
            t0 = time.perf_counter()
            sess.run(None, feed)
            times[i] = time.perf_counter() - t0
        return float(np.median(times) * 1e3)

    latency.cost_name = "latency"  # the key budgets and the reward use
    return latency
