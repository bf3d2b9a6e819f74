"""slimkit.export: Family / nn.Module -> validated ONNX files and deployable bundles.

The verbs load lazily (module ``__getattr__``), so ``import slimkit.export`` stays cheap and does not
import torch; the ``slimkit serve`` command relies on that.

Example:
    >>> from slimkit import export
    >>> export.to_onnx(model, example_input, "m.onnx")        # doctest: +SKIP
    >>> export.bundle(fam, fam.example_input, "out/bundle")   # doctest: +SKIP
    >>> export.to_triton("out/bundle", "model_repository/")  # doctest: +SKIP
    >>> export.to_tensorrt("m.onnx", "m.plan", fp16=True)      # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["to_onnx", "bundle", "latency_cost", "to_tensorrt", "add_engines", "to_triton", "quantize_onnx"]

_VERBS = {"to_onnx": ".onnx", "bundle": ".bundler", "latency_cost": ".latency", "to_tensorrt": ".tensorrt",
          "add_engines": ".tensorrt", "to_triton": ".triton", "quantize_onnx": ".quantize"}


def __getattr__(name: str) -> Any:
    if name in _VERBS:
        fn = getattr(importlib.import_module(_VERBS[name], __name__), name)
        globals()[name] = fn
        return fn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
