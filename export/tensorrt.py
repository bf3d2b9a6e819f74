"""``to_tensorrt``: ONNX to a serialized TensorRT engine (plan), and ``add_engines`` for bundles.

TensorRT 10 and 11 differ in how precision is chosen (NVIDIA, "Migrating from TensorRT 10.x to 11.x"):

* **TensorRT 10** builds weakly typed networks: ``BuilderFlag.FP16`` lets the builder pick FP16 kernels,
  ``BuilderFlag.INT8`` enables INT8 for the explicit Q/DQ nodes of the ONNX file (implicit INT8 with a
  calibrator is deprecated since 10.1, so slimkit never uses it).
* **TensorRT 11** removed every precision flag (FP16, INT8, BF16, FP8, INT4, FP4 and the precision
  constraints) and the INT8 calibrators: networks are always strongly typed, each tensor runs in the
  type the ONNX file gives it. So the ONNX file is converted first: FP16 by ModelOpt AutoCast when
  ``nvidia-modelopt`` is installed (NVIDIA's documented path, it keeps numerically sensitive ops in
  FP32), else by :func:`cast_to_fp16` (every float tensor in FP16, inputs and outputs kept FP32);
  INT8 by symmetric Q/DQ quantisation (:func:`slimkit.export.quantize.quantize_onnx`), which TensorRT
  10 uses too.

Both versions get one optimisation profile spanning ``min_batch..max_batch`` for the dynamic batch dim,
a workspace limit (``set_memory_pool_limit``) and, with ``sparse=True``, ``BuilderFlag.SPARSE_WEIGHTS``
(2:4 structured sparsity, Ampere and later). An engine runs only on the TensorRT version and GPU compute
capability that built it, so :func:`add_engines` stores plans in the bundle keyed by both.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from slimkit.runtime.errors import ConfigError, ExportError, MissingExtraError
from slimkit.runtime.manifest import FileEntry, read_manifest, sha256_file, tensorrt_key, write_manifest

__all__ = ["to_tensorrt", "add_engines", "cast_to_fp16", "require_tensorrt", "INSTALL"]

INSTALL = ('pip install --extra-index-url https://pypi.nvidia.com "tensorrt-cu12>=10" cuda-python '
           '(the TensorRT libraries come from NVIDIA\'s index, not PyPI; use tensorrt-cu13 with CUDA 13, '
           'and JetPack\'s own TensorRT on Jetson)')


def require_tensorrt() -> Any:
    """``import tensorrt`` (version 10 or 11), or raise :class:`MissingExtraError` saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise MissingExtraError(f"TensorRT is not installed ({e}); install it with: {INSTALL}") from e
    if int(trt.__version__.split(".")[0]) < 10:
        raise MissingExtraError(f"TensorRT {trt.__version__} is too old; slimkit builds with TensorRT 10 or 11: "
                                f"{INSTALL}")
    return trt


def _check_args(fp16: Any, int8: Any, sparse: Any, min_batch: Any, opt_batch: Any, max_batch: Any,
                workspace: Any) -> int:
    for name, v in (("fp16", fp16), ("int8", int8), ("sparse", sparse)):
        if not isinstance(v, bool):
            raise ConfigError(f"{name} must be True or False, got {v!r}")
    opt = max_batch if opt_batch is None else opt_batch
    for name, v in (("min_batch", min_batch), ("opt_batch", opt), ("max_batch", max_batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive int, got {v!r}")
    if not min_batch <= opt <= max_batch:
        raise ConfigError(f"need min_batch <= opt_batch <= max_batch, got {min_batch}, {opt}, {max_batch}")
    if workspace is not None and (isinstance(workspace, bool) or not isinstance(workspace, int) or workspace < 1):
        raise ConfigError(f"workspace must be a number of bytes (e.g. 1 << 30) or None, got {workspace!r}")
    return opt


def to_tensorrt(onnx_path: str | os.PathLike, plan: str | os.PathLike, *, fp16: bool = False,
                int8: bool = False, sparse: bool = False, min_batch: int = 1, opt_batch: int | None = None,
                max_batch: int = 64, workspace: int | None = 1 << 30, calibration: Any = None,
                optimization_level: int = 3) -> Path:
    """Build a TensorRT engine for ``onnx_path`` on this machine's GPU and write it to ``plan``.

    Args:
        onnx_path: an FP32 ONNX file (e.g. a bundle variant), or one that already holds Q/DQ nodes.
        plan: where to write the serialized engine (atomically).
        fp16: FP16 kernels (TRT 10: builder flag; TRT 11: the ONNX is cast to FP16 first).
        int8: INT8 through explicit symmetric Q/DQ nodes calibrated on ``calibration`` (both versions).
        sparse: let the builder use 2:4 structured-sparse kernels where weights allow.
        min_batch, opt_batch, max_batch: the optimisation profile of the batch dim (``opt_batch``
            defaults to ``max_batch``).
        workspace: the builder's workspace limit in bytes.
        calibration: input batches (DataLoader of ``(inputs, targets)``, arrays or tensors) for ``int8``.
        optimization_level: ``builder_optimization_level`` (0-5; higher builds slower, may run faster).

    Returns:
        ``Path(plan)``.

    Raises:
        MissingExtraError: TensorRT is not installed (the message gives the pip command).
        ConfigError: bad arguments, no usable GPU, a dynamic dim other than the batch.
        ExportError: TensorRT could not parse or build the model (its errors are in the message).

    Example:
        >>> export.to_tensorrt("out/bundle/w0.50.onnx", "w0.50.plan", fp16=True, max_batch=32)  # doctest: +SKIP
    """
    opt = _check_args(fp16, int8, sparse, min_batch, opt_batch, max_batch, workspace)
    src = Path(onnx_path)
    if not src.is_file():
        raise ConfigError(f"{src} is not a file; pass an ONNX file (export.to_onnx or a bundle variant)")
    trt = require_tensorrt()
    major = int(trt.__version__.split(".")[0])
    plan = Path(plan)
    plan.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".slimkit-trt-", dir=plan.parent) as tmp:
        model_path = _prepare_onnx(src, Path(tmp), fp16=fp16 and major >= 11, int8=int8, calibration=calibration)
        logger = _Logger(trt)
        try:
            builder, problem = trt.Builder(logger), ""
        except Exception as e:  # pybind's factory returns nullptr without a driver/GPU
            builder, problem = None, str(e)
        if builder is None:
            raise ConfigError(f"TensorRT {trt.__version__} found no usable CUDA GPU ({problem} "
                              f"{' '.join(logger.errors)}); build engines on the GPU that will run them")
        flags = 0
        if major >= 11 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # always on in 11; explicit
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(model_path)):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ExportError(f"TensorRT's ONNX parser rejected {src.name}: {'; '.join(errors)}")
        config = builder.create_builder_config()
        if workspace is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        config.builder_optimization_level = optimization_level
        if major == 10:  # weak typing: precision is the builder's choice within these flags
            if fp16:
                config.set_flag(trt.BuilderFlag.FP16)
            if int8:
                config.set_flag(trt.BuilderFlag.INT8)
        if sparse:
            config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            shape = list(t.shape)
            if any(d < 0 for d in shape[1:]):
                raise ConfigError(f"input {t.name!r} has shape {shape}: TensorRT profiles here vary the batch "
                                  "only; export the ONNX with fixed non-batch dims (export.bundle(..., "
                                  "dynamic_dims={1: None}) fixes a sequence at the example's length)")
            if shape and shape[0] < 0:
                profile.set_shape(t.name, [min_batch, *shape[1:]], [opt, *shape[1:]], [max_batch, *shape[1:]])
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError(f"TensorRT {trt.__version__} could not build {src.name}: "
                              f"{'; '.join(logger.errors) or 'see the TensorRT log'}")
        out = Path(tmp) / "engine.plan"
        out.write_bytes(bytes(serialized))
        os.replace(out, plan)
    return plan


class _Logger:
    """A TensorRT ``ILogger`` that keeps errors (for our messages) and forwards warnings."""

    def __new__(cls, trt: Any):
        class Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, msg):
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors.append(str(msg))
                elif severity == trt.ILogger.Severity.WARNING:
                    warnings.warn(f"TensorRT: {msg}", stacklevel=2)

        return Logger()


def _prepare_onnx(src: Path, tmp: Path, *, fp16: bool, int8: bool, calibration: Any) -> Path:
    """The ONNX file TensorRT parses: Q/DQ-quantised for ``int8``, cast for ``fp16`` (TRT 11 only)."""
    path = src
    if int8 and not any(n.op_type == "QuantizeLinear"
                        for n in onnx.load(str(src), load_external_data=False).graph.node):
        from .quantize import quantize_onnx

        if calibration is None:
            raise ConfigError("int8=True needs calibration= (input batches, e.g. the validation loader): "
                              "TensorRT INT8 uses explicit Q/DQ nodes calibrated on your data")
        path = tmp / "int8.onnx"
        quantize_onnx(src, path, calibration=calibration, method="static", symmetric=True, per_channel=True)
    if fp16:
        try:
            from modelopt.onnx.autocast import convert_to_mixed_precision
        except ImportError:
            model = cast_to_fp16(onnx.load(str(path)))
        else:
            model = convert_to_mixed_precision(onnx_path=str(path), low_precision_type="fp16", keep_io_types=True)
        path = tmp / "fp16.onnx"
        onnx.save(model, str(path))
    return path


_KEEP_FP32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}  # ROI/scales are float32 by the ONNX spec


def cast_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` computing in FP16 with FP32 inputs and outputs (for strongly typed TensorRT).

    Float initializers and ``Constant`` values become FP16, ``Cast(to=FLOAT)`` becomes ``Cast(to=FLOAT16)``,
    a ``Cast`` to FP16 follows each float graph input and one back to FP32 precedes each float output.
    Inputs the ONNX spec requires in FP32 (Resize scales) keep their type. Values beyond FP16's range
    (65504) overflow: prefer ModelOpt AutoCast (used automatically when installed) for such models.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep = {n.input[i] for n in g.node if n.op_type in _KEEP_FP32_INPUTS
            for i in _KEEP_FP32_INPUTS[n.op_type] if i < len(n.input)}
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT and not (
                    set(node.output) & keep):
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
    renames, head = {}, []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            renames[inp.name] = f"{inp.name}__fp16"
            head.append(helper.make_node("Cast", [inp.name], [renames[inp.name]], to=TensorProto.FLOAT16,
                                         name=f"{inp.name}__to_fp16"))
    for node in g.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
    tail = []
    for out in g.output:
        if out.type.tensor_type.elem_type == TensorProto.FLOAT:
            inner = f"{out.name}__fp16"
            for node in g.node:
                for i, name in enumerate(node.output):
                    if name == out.name:
                        node.output[i] = inner
            tail.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT, name=f"{out.name}__to_fp32"))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # stale FP32 types; re-inferred below
    m = onnx.shape_inference.infer_shapes(m)
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the FP16 cast produced an invalid model ({e}); install nvidia-modelopt for "
                          "ModelOpt AutoCast") from e
    return m


def add_engines(bundle: str | os.PathLike, *, fp16: bool = False, int8: bool = False, sparse: bool = False,
                min_batch: int = 1, opt_batch: int | None = None, max_batch: int = 64,
                workspace: int | None = 1 << 30, calibration: Any = None) -> list[str]:
    """Build a TensorRT engine for every variant of ``bundle`` on this GPU and record them in its manifest.

    Plans are stored as ``<variant>.trt<version>.sm<cc>.<sha>.plan`` under the file kind
    ``"tensorrt/<version>/sm<cc>"`` (``runtime.load(bundle, backend="tensorrt")`` picks the one for the
    running TensorRT and GPU). With ``int8=True`` the plans go to the bundle's INT8 twins (bundle with
    ``quantize="int8"`` first), rebuilt with symmetric Q/DQ on ``calibration`` as TensorRT requires.
    Building again for the same TensorRT and GPU replaces the earlier plans. On failure the bundle is
    left as it was.

    Returns:
        The file kind written, once per variant.
    """
    opt = _check_args(fp16, int8, sparse, min_batch, opt_batch, max_batch, workspace)
    root = Path(bundle)
    manifest = read_manifest(root)
    targets = manifest.with_precision("int8").variants if int8 else manifest.variants
    trt = require_tensorrt()
    from slimkit.runtime.backends_tensorrt import compute_capability

    cc = compute_capability()
    key = tensorrt_key(trt.__version__, cc)
    written: list[tuple[Path, Path]] = []
    replaced = []
    try:
        for v in targets:
            tmp = root / f".{v.name}.plan.tmp"
            # INT8: from the FP32 base, quantised symmetrically on `calibration` (the twin's own Q/DQ are
            # asymmetric, for onnxruntime; TensorRT needs zero points of 0)
            src = manifest.variant(v.base).files["onnx"].path if int8 else v.files["onnx"].path
            to_tensorrt(root / src, tmp, fp16=fp16, int8=int8, sparse=sparse,
                        min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace=workspace,
                        calibration=calibration)
            sha = sha256_file(tmp)
            # a new name per build: the old manifest stays valid until the new one replaces it
            name = f"{v.name}.trt{trt.__version__}.sm{cc[0]}{cc[1]}.{sha[:12]}.plan"
            written.append((tmp, root / name))
            entry = manifest.variant(v.name)
            if key in entry.files:
                replaced.append(root / entry.files[key].path)
            precision = "int8" if int8 else "fp16" if fp16 else "fp32"
            entry.files[key] = FileEntry(name, sha, {
                "precision": precision, "sparse": sparse, "min_batch": min_batch,
                "opt_batch": opt, "max_batch": max_batch,
                "tensorrt": trt.__version__, "compute_capability": f"{cc[0]}.{cc[1]}"})
        for tmp, final in written:
            os.replace(tmp, final)
        write_manifest(root, manifest)
    except BaseException:
        for tmp, final in written:
            tmp.unlink(missing_ok=True)
            if final not in replaced:  # an identical earlier build is still the old manifest's file
                final.unlink(missing_ok=True)
        raise
    for old in replaced:
        if old.name not in {final.name for _, final in written}:
            old.unlink(missing_ok=True)
    return [key] * len(targets)


def export_tensorrt_command(args: Any) -> int:
    """``slimkit export BUNDLE --tensorrt [--fp16] [--int8 --calibration X.npy] ...`` (for export/cli.py)."""
    calibration = None
    if getattr(args, "calibration", None):
        samples = np.load(args.calibration)  # (N, ...) input samples, in batches of 64
        calibration = [samples[i:i + 64] for i in range(0, len(samples), 64)]
    keys = add_engines(args.bundle, fp16=args.fp16, int8=args.int8, sparse=args.sparse,
                       min_batch=args.min_batch, opt_batch=args.opt_batch, max_batch=args.max_batch,
                       workspace=args.workspace, calibration=calibration)
    print(f"{len(keys)} TensorRT engines ({keys[0] if keys else '-'}) written into {args.bundle}")
    return 0
