"""The KServe v2 / Triton inference protocol over HTTP: JSON tensors and the binary tensor extension.

Pure functions between bytes and numpy (no web framework), used by :mod:`slimkit.runtime.app`.

Protocol: the KServe "Open Inference Protocol" v2 REST API
(https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/) and Triton's binary
tensor data extension (triton-inference-server/server: docs/protocol/extension_binary_data.md):

* A request body is a JSON object ``{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype",
  "parameters"?, "data"?}], "outputs"?: [{"name", "parameters"?: {"binary_data": bool}}]}``.
* With the binary extension, the header ``Inference-Header-Content-Length: N`` says the first ``N``
  bytes are that JSON, and each input with ``parameters.binary_data_size`` takes its raw little-endian
  row-major bytes, in input order, from the rest of the body.
* A model with several inputs (``input_ids`` and ``attention_mask``) takes each of them once, by name,
  in any order; a missing, unknown or repeated input is a 400 that names it and lists the model's inputs.
* Outputs are binary when the request asks (``outputs[i].parameters.binary_data`` or the request-level
  ``parameters.binary_data_output``); the response then carries the same header and puts the raw
  bytes after its JSON. ``tritonclient.http`` asks for binary outputs by default.

slimkit reads three request parameters: ``budget``, ``variant`` and ``latency_ms`` (one of them, as in
``Engine.run``); the response's ``parameters.variant`` names the variant that served the request.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SlimkitError
from .manifest import Manifest, TensorSpec

__all__ = [
    "HTTPError", "InferRequest", "DATATYPES", "SELECTORS",
    "decode_infer_request", "encode_infer_response", "model_metadata", "error_body", "decode_body", "too_large",
]

# v2 datatype name -> numpy dtype (little-endian, as the binary extension prescribes)
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "UINT8": np.dtype("u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "INT8": np.dtype("i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_V2_NAME = {dt.name: name for name, dt in DATATYPES.items()}
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}  # numpy kinds JSON data may have, per target kind

SELECTORS = ("budget", "variant", "latency_ms")


class HTTPError(SlimkitError):
    """A request the server answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[bytes, bytes] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


@dataclass
class InferRequest:
    """A decoded inference request: the input (an array, or ``{name: array}`` for a model with several
    inputs) plus what the response must look like."""

    x: np.ndarray | dict[str, np.ndarray]
    id: str | None
    selector: dict[str, Any]          # at most one of budget / variant / latency_ms
    outputs: list[tuple[str, bool]] | None  # requested (name, binary); None: all outputs
    binary_default: bool              # binary for outputs not listed (request binary_data_output)


def _bad(message: str) -> HTTPError:
    return HTTPError(400, message)


def _no_constants(name: str) -> Any:
    raise _bad(f"the request JSON contains {name}, which is not valid JSON; send finite numbers "
               "(NaN and Infinity are rejected)")


def _json(raw: bytes, what: str) -> dict:
    try:
        obj = json.loads(raw, parse_constant=_no_constants)
    except HTTPError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _bad(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise _bad(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def decode_infer_request(body: bytes, header_length: int | None,
                         spec: TensorSpec | Sequence[TensorSpec]) -> InferRequest:
    """Parse an infer request for a model with input ``spec`` (or inputs: a list of specs).

    Args:
        body: the whole request body.
        header_length: the ``Inference-Header-Content-Length`` value, or None for a pure JSON body.
        spec: the model input (name, numpy dtype, shape with None for dynamic dims), or all of its inputs;
            with more than one, ``InferRequest.x`` is ``{name: array}``.

    Raises:
        HTTPError: 400 with a message naming the field, what was received and what is allowed.
    """
    rest: bytes | memoryview
    if header_length is None:
        header, rest = body, b""
    else:
        if not 0 < header_length <= len(body):
            raise _bad(f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} "
                       "bytes; it must be the byte length of the JSON header that starts the body")
        header, rest = body[:header_length], memoryview(body)[header_length:]
    req = _json(header, "the request body" if header_length is None else "the inference header")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise _bad(f"'parameters' must be a JSON object, got {params!r}")
    selector = {k: params[k] for k in SELECTORS if k in params}
    if len(selector) > 1:
        raise _bad(f"pass at most one of {', '.join(SELECTORS)} in the request parameters; got "
                   f"{', '.join(selector)}")
    specs = [spec] if isinstance(spec, TensorSpec) else list(spec)
    x = _decode_inputs(req.get("inputs"), rest, specs)
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise _bad(f"'id' must be a string, got {rid!r}")
    outputs = _requested_outputs(req.get("outputs"))
    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise _bad(f"parameters.binary_data_output must be true or false, got {binary_default!r}")
    return InferRequest(x, rid, selector, outputs, binary_default)


def _decode_inputs(inputs: Any, rest: Any, specs: list[TensorSpec]) -> np.ndarray | dict[str, np.ndarray]:
    """The request's tensors: one array for a single-input model, else ``{name: array}`` with every input."""
    if len(specs) == 1:
        spec = specs[0]
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            got = len(inputs) if isinstance(inputs, list) else repr(inputs)[:40]
            raise _bad(f"'inputs' must list exactly one tensor (this model's {spec.name!r}, {spec.describe()}); "
                       f"got {got}")
        return _decode_tensor(inputs[0], rest, spec)
    takes = ", ".join(f"{s.name!r} ({s.describe()})" for s in specs)
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
        raise _bad(f"'inputs' must list one tensor per model input: {takes}; got {repr(inputs)[:60]}")
    by_name = {s.name: s for s in specs}
    names = [t.get("name") for t in inputs]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise _bad(f"unknown input {unknown[0]!r}; this model's inputs are {takes}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise _bad(f"input {repeated[0]!r} is sent twice; send each of {takes} once")
    missing = [s.name for s in specs if s.name not in names]
    if missing:
        raise _bad(f"missing input {missing[0]!r}; this model's inputs are {takes}")
    # binary inputs take their bytes from the body in request order
    lengths = [_binary_size(t) for t in inputs]
    if sum(lengths) != len(rest):
        raise _bad(f"the inputs declare {sum(lengths)} bytes of binary data (parameters.binary_data_size) but "
                   f"{len(rest)} bytes follow the inference header")
    out, start = {}, 0
    for t, n in zip(inputs, lengths, strict=True):
        out[t["name"]] = _decode_tensor(t, rest[start:start + n], by_name[t["name"]])
        start += n
    return {s.name: out[s.name] for s in specs}


def _binary_size(t: dict) -> int:
    """The bytes input ``t`` takes from the body (0 without a valid ``binary_data_size``)."""
    p = t.get("parameters") or {}
    size = p.get("binary_data_size") if isinstance(p, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0


def _decode_tensor(t: dict, rest: Any, spec: TensorSpec) -> np.ndarray:
    name, shape, datatype = t.get("name"), t.get("shape"), t.get("datatype")
    if name != spec.name:
        raise _bad(f"unknown input {name!r}; this model's input is {spec.name!r} ({spec.describe()})")
    want = _V2_NAME.get(spec.dtype)
    if not isinstance(datatype, str) or datatype != want:
        raise _bad(f"input {name!r} has datatype {datatype!r}; this model takes {want} ({spec.describe()})")
    if (not isinstance(shape, list) or len(shape) != len(spec.shape)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
            or any(s is not None and s != d for s, d in zip(spec.shape, shape))):
        raise _bad(f"input {name!r} has shape {shape!r}; this model takes {spec.describe()}")
    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    tparams = t.get("parameters") or {}
    size = tparams.get("binary_data_size") if isinstance(tparams, dict) else None
    if size is not None:
        if "data" in t:
            raise _bad(f"input {name!r} has both 'data' and parameters.binary_data_size; send one")
        if size != count * dtype.itemsize or size != len(rest):
            raise _bad(f"input {name!r}: binary_data_size is {size!r} and {len(rest)} bytes follow the "
                       f"header, but shape {shape} of {datatype} needs {count * dtype.itemsize} bytes")
        x = np.frombuffer(rest, dtype=dtype).reshape(shape)
    else:
        if len(rest):
            raise _bad(f"{len(rest)} bytes follow the inference header but no input declares "
                       "parameters.binary_data_size")
        if "data" not in t:
            raise _bad(f"input {name!r} has no 'data' and no parameters.binary_data_size")
        x = _from_json_data(t["data"], dtype, shape, name)
    if dtype.kind == "f" and not np.isfinite(x).all():
        raise _bad(f"input {name!r} contains NaN or infinite values; send finite numbers")
    return x


def _from_json_data(data: Any, dtype: np.dtype, shape: list[int], name: str) -> np.ndarray:
    try:
        arr = np.asarray(data)
    except ValueError:  # ragged nested lists
        raise _bad(f"input {name!r}: 'data' is a ragged nested list; send a flat row-major list "
                   f"of {math.prod(shape)} numbers") from None
    if arr.size and arr.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise _bad(f"input {name!r}: 'data' must hold {_V2_NAME[dtype.name]} numbers, got values of "
                   f"type {arr.dtype} (e.g. {arr.ravel()[0]!r})")
    if arr.size != math.prod(shape):
        raise _bad(f"input {name!r}: 'data' has {arr.size} elements but shape {shape} needs "
                   f"{math.prod(shape)}")
    if dtype.kind != "f" and arr.dtype.kind == "i" and arr.size and (
            arr.min() < np.iinfo(dtype).min or arr.max() > np.iinfo(dtype).max):
        raise _bad(f"input {name!r}: values outside the range of {_V2_NAME[dtype.name]}")
    return arr.astype(dtype, copy=False).reshape(shape)


def _requested_outputs(outputs: Any) -> list[tuple[str, bool]] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise _bad(f"'outputs' must be a list of {{'name': ...}} objects, got {outputs!r}")
    out = []
    for o in outputs:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise _bad(f"each requested output must be an object with a 'name', got {o!r}")
        p = o.get("parameters") or {}
        binary = p.get("binary_data", False) if isinstance(p, dict) else False
        if not isinstance(binary, bool):
            raise _bad(f"output {o['name']!r}: parameters.binary_data must be true or false, got {binary!r}")
        out.append((o["name"], binary))
    return out


def encode_infer_response(model: str, req: InferRequest, outputs: dict[str, np.ndarray],
                          parameters: dict[str, Any]) -> tuple[bytes, int | None]:
    """Encode ``outputs`` for ``req``; returns ``(body, header_length)`` (None for a pure JSON body).

    Raises:
        HTTPError: 400 when the request asked for an output the model does not have.
    """
    wanted = req.outputs if req.outputs is not None else [(n, req.binary_default) for n in outputs]
    tensors, blobs = [], []
    for name, binary in wanted:
        if name not in outputs:
            raise _bad(f"unknown output {name!r}; this model's outputs are {list(outputs)}")
        y = outputs[name]
        t: dict[str, Any] = {"name": name, "shape": list(y.shape), "datatype": _V2_NAME[y.dtype.name]}
        if binary:
            raw = np.ascontiguousarray(y, dtype=y.dtype.newbyteorder("<")).tobytes()
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = y.ravel().tolist()
        tensors.append(t)
    resp: dict[str, Any] = {"model_name": model, "model_version": "1"}
    if req.id is not None:
        resp["id"] = req.id
    resp["parameters"] = parameters
    resp["outputs"] = tensors
    header = json.dumps(resp, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def model_metadata(name: str, manifest: Manifest) -> dict[str, Any]:
    """``GET /v2/models/{name}``: inputs and outputs with v2 datatypes and -1 for dynamic dims."""
    def tensor(s: TensorSpec) -> dict[str, Any]:
        return {"name": s.name, "datatype": _V2_NAME[s.dtype], "shape": [-1 if d is None else d for d in s.shape]}

    return {"name": name, "versions": ["1"], "platform": "slimkit_onnxruntime",
            "inputs": [tensor(s) for s in manifest.inputs], "outputs": [tensor(s) for s in manifest.outputs],
            "parameters": {"variants": manifest.names, "method": manifest.method, "task": manifest.task}}


def error_body(message: str) -> bytes:
    """The v2 error object ``{"error": message}`` that ``tritonclient`` reports."""
    return json.dumps({"error": message}).encode()


def too_large(size: int, limit: int, where: str = "") -> HTTPError:
    """413 for a body of ``size`` bytes over ``limit``."""
    return HTTPError(413, f"request body of {size} bytes{where} exceeds the limit of {limit} bytes; send "
                          "smaller batches or start the server with a larger max_body_bytes")


def decode_body(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` gzip or deflate, never inflating past ``limit`` bytes (zip bombs)."""
    if encoding in (None, "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise HTTPError(415, f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        raw = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise HTTPError(400, f"the {encoding} body could not be decompressed: {e}") from None
    if len(raw) > limit or d.unconsumed_tail:
        raise too_large(len(raw), limit, " after decompression")
    return raw
