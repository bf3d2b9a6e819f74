"""INT8 post-training quantisation of ONNX files with ``onnxruntime.quantization``.

Static quantisation (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018; ONNX Runtime's QDQ implementation): weights are
quantised once, and activation ranges come from calibration batches (min/max by default), so at run
time every convolution and matrix product runs in integer arithmetic. Dynamic quantisation (the
fallback when no calibration data is given) quantises weights only and computes activation scales on
every call; it suits MatMul/RNN-heavy models and is usually *slower* than FP32 for convolutions
(measured in bench/quantize/RESULTS.md), so slimkit warns when it is used.

The graph is first put through ``quant_pre_process`` (symbolic shape inference and ONNX Runtime's
graph optimisations, e.g. folding BatchNorm into Conv), as ONNX Runtime's quantisation guide advises,
so that quantisation sees fused operators.

``symmetric=True`` gives zero-point-0 activations and weights: what TensorRT's ONNX parser requires of
Q/DQ nodes, and the only INT8 path of TensorRT 11 (see :mod:`slimkit.export.tensorrt`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from slimkit.runtime.errors import ConfigError, ExportError

__all__ = ["quantize_onnx", "calibration_batches", "evaluate_onnx", "METHODS"]

METHODS = ("auto", "static", "dynamic")
_CALIBRATE = ("minmax", "entropy", "percentile")


def calibration_batches(data: Any, *, max_batches: int | None = None) -> list[np.ndarray]:
    """Input batches as numpy arrays from a DataLoader of ``(inputs, targets)`` (or of inputs), a
    tensor/array (one batch), or an iterable of tensors/arrays.

    Raises:
        ConfigError: ``data`` is none of these, or yields nothing.
    """
    if data is None:
        raise ConfigError("calibration data is missing; pass calibration=val_loader (batches of inputs)")
    if max_batches is not None and (isinstance(max_batches, bool) or not isinstance(max_batches, int)
                                    or max_batches < 1):
        raise ConfigError(f"max_batches must be a positive int or None, got {max_batches!r}")
    items: Iterable = [data] if _is_array(data) else data
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes, dict)):
        raise ConfigError(f"calibration must be a DataLoader, a tensor/array or a list of them, got "
                          f"{type(data).__name__}")
    out = []
    for item in items:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not _is_array(x):
            raise ConfigError(f"calibration batches must be tensors/arrays (or (inputs, targets) pairs), got "
                              f"{type(x).__name__}")
        out.append(np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)))
        if max_batches is not None and len(out) >= max_batches:
            break
    if not out:
        raise ConfigError("the calibration data yielded no batches")
    return out


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "detach") and hasattr(x, "shape"))


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike, *, calibration: Any = None,
                  method: str = "auto", per_channel: bool = False, symmetric: bool = False,
                  calibrate_method: str = "minmax", max_batches: int | None = 32,
                  preprocess: bool = True) -> dict[str, Any]:
    """Write an INT8 copy of the ONNX file ``src`` to ``dst`` and return the recipe used.

    Args:
        src: an FP32 ONNX file (e.g. one of a bundle's variants).
        dst: the INT8 ONNX file to write (atomically: nothing is left behind on failure).
        calibration: representative inputs for static quantisation: a DataLoader (e.g. the validation
            loader), a tensor/array, or a list of them. Needed for ``method="static"``.
        method: ``"static"`` (QDQ, activations calibrated), ``"dynamic"`` (weights only), or ``"auto"``:
            static when ``calibration`` is given, else dynamic with a warning.
        per_channel: one weight scale per output channel (more accurate, can be slightly slower).
        symmetric: zero-point-0 activations too (TensorRT needs this; costs a little accuracy on ReLU
            outputs, which are non-negative).
        calibrate_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        max_batches: calibration batches used at most.
        preprocess: run ``quant_pre_process`` first (recommended; falls back with a warning if it fails).

    Returns:
        The recipe as JSON-ready data (stored as the twin's ``config["quantization"]``).

    Raises:
        ConfigError: bad arguments. ExportError: onnxruntime could not quantise the model.

    Example:
        >>> quantize_onnx("w1.00.onnx", "w1.00-int8.onnx", calibration=val_loader)  # doctest: +SKIP
        {'method': 'static', 'format': 'QDQ', ...}
    """
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if calibrate_method not in _CALIBRATE:
        raise ConfigError(f"calibrate_method must be one of {_CALIBRATE}, got {calibrate_method!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConfigError(f"{src} is not a file; pass an ONNX file written by export.to_onnx")
    if method == "auto":
        method = "static" if calibration is not None else "dynamic"
        if method == "dynamic":
            warnings.warn("no calibration data: falling back to dynamic INT8 quantisation (weights only), "
                          "which is often slower than FP32 for convolutions; pass calibration=val_loader "
                          "for static quantisation", stacklevel=2)
    batches = calibration_batches(calibration, max_batches=max_batches) if method == "static" else []
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".slimkit-quant-", dir=dst.parent) as tmp:
        model_in, preprocessed = str(src), False
        if preprocess:
            try:
                quant_pre_process(str(src), str(Path(tmp) / "pre.onnx"))
                model_in, preprocessed = str(Path(tmp) / "pre.onnx"), True
            except Exception as e:  # symbolic shape inference fails on some graphs; quantise as is
                warnings.warn(f"quant_pre_process failed on {src.name} ({e}); quantising without it",
                              stacklevel=2)
        out = Path(tmp) / "int8.onnx"
        try:
            if method == "static":
                quantize_static(
                    model_in, str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                      "percentile": CalibrationMethod.Percentile}[calibrate_method],
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
            else:
                quantize_dynamic(model_in, str(out), per_channel=per_channel, weight_type=QuantType.QInt8)
            onnx.checker.check_model(str(out))
        except Exception as e:
            raise ExportError(f"onnxruntime could not quantise {src.name} ({method}): {e}") from e
        os.replace(out, dst)
    recipe: dict[str, Any] = {"method": method, "format": "QDQ" if method == "static" else "QOperator",
                              "weights": "int8", "per_channel": per_channel, "preprocessed": preprocessed,
                              "onnxruntime": onnxruntime.__version__}
    if method == "static":
        recipe.update(activations="int8" if symmetric else "uint8", symmetric=symmetric,
                      calibrate_method=calibrate_method, calibration_batches=len(batches),
                      calibration_samples=int(sum(len(b) for b in batches)))
    return recipe


def evaluate_onnx(path: str | os.PathLike, data: Any, *, task: str = "classification") -> dict[str, Any]:
    """Metrics of an ONNX file under onnxruntime (CPU, 1 thread) on a loader of ``(inputs, targets)``.

    Returns ``{"accuracy"}`` (classification) or ``{"mse"}`` (regression), plus ``"predictions"``
    (the arg-max or raw outputs, to compare two models on the same data). Loaders without targets
    give only ``"predictions"``.
    """
    import onnxruntime as ort

    from slimkit.runtime.backends import session_options

    sess = ort.InferenceSession(os.fspath(path), session_options(1), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    preds, targets = [], []
    for item in data:
        x, y = (item[0], item[1]) if isinstance(item, (tuple, list)) and len(item) > 1 else (item, None)
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        out = sess.run(None, {name: np.ascontiguousarray(x)})[0]
        preds.append(out.argmax(-1) if task == "classification" else out)
        if y is not None:
            targets.append(y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y))
    result: dict[str, Any] = {"predictions": np.concatenate(preds)}
    if targets:
        t = np.concatenate(targets)
        p = result["predictions"]
        if task == "classification":
            result["accuracy"] = float((p == t).mean())
        else:
            result["mse"] = float(np.mean((p.reshape(t.shape) - t) ** 2))
    return result
