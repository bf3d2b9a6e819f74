"""The graph a variant runs when every session reads one buffer of weights (``share_weights=True``).

onnxruntime has no strided tensors: a session can use a slice of a shared buffer in place only when the
slice is one contiguous range. :mod:`slimkit.export.sharing` lays a shared weight out so that every
variant's copy is a concatenation of such ranges (its *pieces*) and assembles it with ``Concat`` nodes,
which onnxruntime folds into a private copy when the session starts. This module rewrites the layers
that read such a weight so that they read the pieces themselves and the copy never exists:

* ``MatMul(A, W)`` with ``W`` split along its columns (outputs):
  ``Concat(MatMul(A, P_0), MatMul(A, P_1), ..., axis=-1)``;
* ``Gemm(A, W, C, transB=1)`` with ``W`` split along its columns (inputs):
  ``Sum(Gemm(A_0, P_0, C), Gemm(A_1, P_1), ...)`` where ``A_0, A_1, ...`` are ``Split(A, axis=1)``;
  with ``transB=0`` the columns are outputs and the results are concatenated as for ``MatMul``;
* ``Conv(X, W, B)`` (``group=1``) with ``W`` split along its input channels:
  ``Sum(Conv(X_0, P_0, B), Conv(X_1, P_1), ...)`` over ``Split(X, axis=1)``.

Convolutions are not split (each piece's convolution would cost more than copying the weight, which a
convolution reuses at every position; measured on the demo family), nor are layers whose weight is
under :data:`SPLIT_MIN_BYTES`: they keep the ``Concat``, which then runs on every call (a copy of that
weight per call, still one copy at rest). Every piece becomes an overridable initializer (also a graph
input), which onnxruntime never folds, fuses or pre-packs, so the caller's buffer is what runs, while
the variant's own tensors are optimised as usual.

The split layers cost more than whole ones, so this graph is only used in that mode;
bench/shared_weights/RESULTS.md measures by how much. A variant with nothing to split gets no such
graph: ``share_weights=True`` then runs its usual graph with pre-packing and folding turned off.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from slimkit.runtime.manifest import TensorRange

__all__ = ["split_by_pieces", "SPLIT_OPS", "SPLIT_MIN_BYTES"]

SPLIT_OPS = ("MatMul", "Gemm")
SPLIT_MIN_BYTES = 16 << 10  # a smaller weight is cheaper to copy per call than to multiply in pieces


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _readers(graph: onnx.GraphProto, value: str) -> list[tuple[onnx.NodeProto, int]]:
    return [(n, i) for n in graph.node for i, name in enumerate(n.input) if name == value]


def _used_in_subgraphs(graph: onnx.GraphProto, value: str) -> bool:
    def uses(g: onnx.GraphProto) -> bool:
        for n in g.node:
            if value in n.input:
                return True
            for a in n.attribute:
                if any(uses(s) for s in ([a.g] if a.HasField("g") else []) + list(a.graphs)):
                    return True
        return False

    return any(uses(s) for n in graph.node for a in n.attribute
               for s in ([a.g] if a.HasField("g") else []) + list(a.graphs))


def _rewrite(node: onnx.NodeProto, concat: onnx.NodeProto, sizes: list[int], ndim: int,
             new: list[onnx.NodeProto], extra: list[onnx.TensorProto], ops: tuple[str, ...]) -> bool:
    """Append the nodes computing ``node`` from the pieces of ``concat``; False if it does not apply."""
    if node.op_type not in ops:
        return False
    axis = _attr(concat, "axis", 0) % ndim
    pieces = list(concat.input)
    out, tag = node.output[0], node.name or node.output[0]
    parts = [f"{tag}.part{k}" for k in range(len(pieces))]
    if node.op_type == "MatMul" and ndim == 2 and axis == 1 or (
            node.op_type == "Gemm" and ndim == 2 and axis == 1 and not _attr(node, "transB", 0)):
        # W's columns are outputs: each piece gives some output columns
        bias = list(node.input[2:3])
        if node.op_type == "Gemm" and (bias and _attr(node, "beta", 1.0) != 1.0):
            return False
        for p, part in zip(pieces, parts, strict=True):
            new.append(helper.make_node(node.op_type, [node.input[0], p], [part], name=part))
            new[-1].attribute.extend(node.attribute)
        joined = f"{tag}.joined" if bias else out
        new.append(helper.make_node("Concat", parts, [joined], axis=-1, name=f"{tag}.concat"))
        if bias:
            new.append(helper.make_node("Add", [joined, bias[0]], [out], name=f"{tag}.bias"))
        return True
    split_input = (node.op_type == "Gemm" and ndim == 2 and axis == 1 and _attr(node, "transB", 0)
                   and not _attr(node, "transA", 0)) or (
        node.op_type == "Conv" and axis == 1 and _attr(node, "group", 1) == 1)
    if not split_input:
        return False
    # W's columns are inputs: each piece multiplies some input channels, and the products add up
    sizes_name = f"{tag}.split"
    extra.append(numpy_helper.from_array(np.array(sizes, dtype=np.int64), sizes_name))
    chunks = [f"{tag}.in{k}" for k in range(len(pieces))]
    new.append(helper.make_node("Split", [node.input[0], sizes_name], chunks, axis=1, name=f"{tag}.split"))
    for k, (p, chunk, part) in enumerate(zip(pieces, chunks, parts, strict=True)):
        inputs = [chunk, p] + (list(node.input[2:3]) if k == 0 else [])
        new.append(helper.make_node(node.op_type, inputs, [part], name=part))
        new[-1].attribute.extend(node.attribute)
    new.append(helper.make_node("Sum", parts, [out], name=f"{tag}.sum"))
    return True


def split_by_pieces(model: onnx.ModelProto, pieces: Mapping[str, TensorRange], ops: tuple[str, ...] = SPLIT_OPS,
                    min_bytes: int = SPLIT_MIN_BYTES) -> onnx.ModelProto | None:
    """A copy of a shared variant's graph (from :func:`slimkit.export.sharing.share_weights`) in which
    the layers above read the pieces directly.

    Args:
        model: the variant's graph, its shared tensors external and assembled by ``Concat`` nodes.
        pieces: the shared pieces (initializers that live in the weights file) by name.
        ops: the layer types to split.
        min_bytes: smaller weights are not split.

    Returns:
        The rewritten copy (the same outputs for the same inputs, up to float rounding of the sums), or
        None when no layer was split.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    dims = {t.name: list(t.dims) for t in g.initializer}
    extra: list[onnx.TensorProto] = []
    replaced: dict[str, list[onnx.NodeProto]] = {}  # a reader's name -> nodes replacing it
    dropped: set[str] = set()
    for concat in [n for n in g.node if n.op_type == "Concat" and n.input and all(i in pieces for i in n.input)]:
        w = concat.output[0]
        shape = dims[concat.input[0]]
        if sum(pieces[p].nbytes for p in concat.input) < min_bytes:
            continue
        axis = _attr(concat, "axis", 0) % len(shape)
        sizes = [dims[p][axis] for p in concat.input]
        readers = _readers(g, w)
        if _used_in_subgraphs(g, w) or any(o.name == w for o in g.output):
            continue
        plan: dict[str, list[onnx.NodeProto]] = {}
        for node, idx in readers:
            new: list[onnx.NodeProto] = []
            if idx != 1 or not node.name or node.name in replaced or not _rewrite(node, concat, sizes, len(shape), new, extra, ops):
                break
            plan[node.name] = new
        else:
            replaced.update(plan)
            dropped.add(concat.name)
    if not dropped:
        return None
    nodes = []
    for n in g.node:
        if n.name in dropped:
            continue
        nodes.extend(replaced.get(n.name, [n]) if n.name else [n])
    gone = {n.output[0] for n in g.node if n.name in dropped}
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(extra)
    kept = [v for v in g.value_info if v.name not in gone]
    del g.value_info[:]
    g.value_info.extend(kept)
    for t in g.initializer:  # an initializer that is also an input is one onnxruntime never folds or packs
        if t.name in pieces:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return m
