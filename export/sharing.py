"""One copy of the weights for a nested family: find the tensors variants share, lay them out in one
weights file, and rewrite each variant's ONNX graph to read its tensors from it.

Sharing is found from the data, not from the method: a variant's initializer is *shared* when it equals
a leading slice ``R[:a, :b, ...]`` of a tensor ``R`` of another (or the same) variant, bit for bit.
SortedNet widths are such slices after channel reordering, boosting stages are prefixes along the
hidden dim, identical tensors are the trivial case; N2N students share nothing and are left alone.

**Layout.** For each shared root ``R`` the sizes its members take along each axis become cut points.
The axes where members differ are split at those cuts into blocks; axis 0, when it varies, is not split
but read as a prefix, because the first ``a`` rows of a row-major block are one contiguous range. So
every member is a concatenation of contiguous byte ranges of the weights file (its *pieces*), e.g. for
a ``[1024, 1024]`` weight shared by widths 256/512/768/1024 the file holds four column blocks
``[1024, 256]`` and width 512 reads the first 512 rows of the first two. Blocks are stored smallest
member first and aligned to 64 bytes, so every piece can be used in place as an aligned array.

**Graphs.** Each piece is an initializer with ONNX external data (``location``, ``offset``, ``length``)
named after its bytes (``shared.<root>.<block>.<rows>``), so equal names mean equal data in every
variant. A member made of one piece is replaced by that piece; a member made of several becomes a tree of
``Concat`` nodes over its pieces whose output takes the member's name. onnxruntime folds those
``Concat`` nodes into one initializer when a session is created, so the graph it runs is the one it ran
before (bench/shared_weights/RESULTS.md times both).

:func:`share_weights` is what ``export.bundle`` calls; the table it returns goes into the manifest
(``"weights"``, see :mod:`slimkit.runtime.manifest`) so the runtime can hand every session views of one
buffer (``runtime.load(dir, share_weights=True)``) without parsing ONNX.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from slimkit.runtime.errors import ExportError
from slimkit.runtime.manifest import TensorRange, WeightsEntry, sha256_file
from slimkit.runtime.shared_weights import ALIGN, group_leading_slices, read_weights, tensor_views

__all__ = ["MIN_SHARED_BYTES", "WEIGHTS_FILE", "share_weights", "share_bundle", "find_shared"]

MIN_SHARED_BYTES = 256  # smaller tensors (scalars, shapes) stay inside each graph: cheaper than a reference
WEIGHTS_FILE = "weights.bin"


def find_shared(models: Mapping[str, onnx.ModelProto], *, min_bytes: int = MIN_SHARED_BYTES
                ) -> list[tuple[np.ndarray, dict[tuple[str, str], tuple[int, ...]]]]:
    """The tensors of ``models`` that are leading slices of one another, from their data.

    Returns:
        One ``(root array, {(variant, initializer name): shape})`` per group of two or more; empty
        when the variants share nothing (N2N students, unrelated models).
    """
    arrays = [((v, t.name), numpy_helper.to_array(t)) for v, m in models.items() for t in m.graph.initializer
              if t.data_location != onnx.TensorProto.EXTERNAL]
    by_key = dict(arrays)
    groups = group_leading_slices(arrays, min_bytes=min_bytes)
    return [(by_key[root], {k: tuple(by_key[k].shape) for k in members}) for root, members in groups]


def _layout(array: np.ndarray, members: dict[tuple[str, str], tuple[int, ...]], rid: int, offset: int
            ) -> tuple[list[tuple[str, TensorRange, np.ndarray]], dict, int]:
    """Blocks of one shared tensor and, per member, its pieces as a nested list (one level per split
    axis, each leaf ``(name, TensorRange)``).

    Returns ``(blocks with their data, {member: (nested pieces, split axes)}, next offset)``.
    """
    full = array.shape
    shapes = set(members.values())
    varying = [a for a in range(len(full)) if any(s[a] < full[a] for s in shapes)]
    split = [a for a in varying if a != 0]
    cuts = {a: sorted({s[a] for s in shapes} | {full[a]}) for a in split}
    spans = {a: list(zip([0] + cuts[a][:-1], cuts[a], strict=True)) for a in split}
    grid = list(itertools.product(*(range(len(spans[a])) for a in split)))
    grid.sort(key=lambda g: (max(g, default=0), g))  # the smallest member's blocks first
    blocks, where = [], {}
    for bid, g in enumerate(grid):
        sl = [slice(None)] * len(full)
        for a, k in zip(split, g, strict=True):
            sl[a] = slice(*spans[a][k])
        data = np.ascontiguousarray(array[tuple(sl)])
        offset = -(-offset // ALIGN) * ALIGN
        blocks.append((f"shared.{rid}.{bid}", TensorRange(offset, tuple(data.shape), data.dtype.name), data))
        where[g] = blocks[-1][:2]
        offset += data.nbytes

    def pieces(shape: tuple[int, ...], level: int, g: tuple[int, ...]):
        if level == len(split):
            name, block = where[g]
            rows = shape[0] if 0 in varying else block.shape[0]
            if rows == block.shape[0]:
                return name, block
            return f"{name}.{rows}", TensorRange(block.offset, (rows, *block.shape[1:]), block.dtype)
        a = split[level]
        return [pieces(shape, level + 1, (*g, k)) for k, (_, end) in enumerate(spans[a]) if end <= shape[a]]

    return blocks, {m: (pieces(shape, 0, ()), split) for m, shape in members.items()}, offset


def _external(name: str, t: TensorRange, location: str) -> onnx.TensorProto:
    proto = onnx.TensorProto()
    proto.name = name
    proto.data_type = helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype))
    proto.dims.extend(t.shape)
    proto.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(t.offset)), ("length", str(t.nbytes))):
        entry = proto.external_data.add()
        entry.key, entry.value = k, v
    return proto


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_uses(sub, old, new)
    for out in graph.output:
        if out.name == old:  # an initializer that is also an output: keep the name through an Identity
            graph.node.append(helper.make_node("Identity", [new], [old], name=f"{old}.identity"))


def _assemble(name: str, nested, split: list[int], nodes: list[onnx.NodeProto], used: dict) -> str:
    """Concat nodes building ``nested`` pieces; returns the value name holding the result."""
    if isinstance(nested, tuple):
        used[nested[0]] = nested[1]
        return nested[0]
    if len(nested) == 1:
        return _assemble(name, nested[0], split[1:], nodes, used)
    parts = [_assemble(f"{name}.{k}", p, split[1:], nodes, used) for k, p in enumerate(nested)]
    nodes.append(helper.make_node("Concat", parts, [name], axis=split[0], name=f"{name}.concat"))
    return name


def _drop_provenance(graph: onnx.GraphProto) -> None:
    """Remove what the exporter records for debugging (each node's source line and module path, the
    exported program's signature): in a small model it weighs more than the variant's own tensors, and
    a shared bundle would repeat it per variant. Nothing the graph computes depends on it. (The shape
    hints in ``value_info`` stay: without them onnxruntime fuses some graphs differently.)"""
    del graph.metadata_props[:]
    for item in [*graph.node, *graph.value_info, *graph.initializer, *graph.input, *graph.output]:
        del item.metadata_props[:]


def share_weights(models: Mapping[str, onnx.ModelProto], weights_path: str | Path, *,
                  min_bytes: int = MIN_SHARED_BYTES) -> dict[str, TensorRange] | None:
    """Move the tensors ``models`` share into one weights file and point every graph at it, in place.

    Args:
        models: ``{variant: ModelProto}`` with their initializers inline (as ``to_onnx`` writes them).
        weights_path: the weights file to write (its name is the graphs' external-data ``location``).
        min_bytes: smaller tensors stay inline.

    Returns:
        ``{piece name: TensorRange}`` of every range the graphs read, or None (nothing written, no graph
        touched) when no tensor is shared.
    """
    shared = find_shared(models, min_bytes=min_bytes)
    if not shared:
        return None
    location = Path(weights_path).name
    table: dict[str, TensorRange] = {}
    plans: dict[str, dict[str, tuple]] = {v: {} for v in models}
    offset = 0
    with open(weights_path, "wb") as f:
        for rid, (array, members) in enumerate(shared):
            blocks, pieces, offset = _layout(array, members, rid, offset)
            for _, block, data in blocks:
                f.seek(block.offset)
                f.write(data.tobytes())
            for (variant, name), plan in pieces.items():
                plans[variant][name] = plan
        f.truncate(offset)
    for variant, model in models.items():
        graph = model.graph
        keep = [t for t in graph.initializer if t.name not in plans[variant]]
        nodes: list[onnx.NodeProto] = []
        used: dict[str, TensorRange] = {}
        for name, (nested, split) in plans[variant].items():
            value = _assemble(name, nested, split, nodes, used)
            if value != name:
                _rename_uses(graph, name, value)
        del graph.initializer[:]
        graph.initializer.extend(keep + [_external(n, t, location) for n, t in used.items()])
        head = list(nodes) + list(graph.node)
        del graph.node[:]
        graph.node.extend(head)
        _drop_provenance(graph)
        table.update(used)
    return table


def share_bundle(root: Path, names: list[str], probe: np.ndarray | dict[str, np.ndarray]
                 ) -> tuple[WeightsEntry, dict[str, str | None]] | None:
    """Share the tensors of the graphs ``<root>/<name>.onnx`` through ``<root>/weights.bin``, in place.

    Writes, for each graph that reads the weights file, its rewritten ``<name>.onnx`` and, where it has
    layers worth splitting, ``<name>.shared.onnx`` (the graph ``runtime.load(dir, share_weights=True)``
    runs, see :mod:`slimkit.export.sharing_views`), and checks both against the self-contained graph on
    ``probe`` (the example: an array, or ``{input name: array}`` for several inputs) with onnxruntime, the
    way each mode loads them: the first must give the same outputs, the
    second the same up to float rounding.

    Returns:
        ``(the manifest's weights record, {name: its onnx_shared file or None})`` for the graphs that
        read the file, or None when nothing is shared (no file written or changed).

    Raises:
        ExportError: a rewritten graph disagrees with its self-contained one.
    """
    from slimkit.runtime.backends import OnnxRuntimeBackend

    from .sharing_views import split_by_pieces

    paths = {n: root / f"{n}.onnx" for n in names}
    before = {n: OnnxRuntimeBackend(p, threads=1).run(probe) for n, p in paths.items()}
    models = {n: onnx.load(str(p)) for n, p in paths.items()}
    weights_path = root / WEIGHTS_FILE
    table = share_weights(models, weights_path)
    if table is None:
        return None
    entry = WeightsEntry(WEIGHTS_FILE, sha256_file(weights_path), weights_path.stat().st_size, table)
    views = tensor_views(read_weights(root, entry), entry)
    shared_files: dict[str, str | None] = {}
    for n, model in models.items():
        if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            continue  # this graph shares nothing; it stays the self-contained file it was
        onnx.save(model, str(paths[n]))
        checks = [(paths[n], {}, True)]
        split_model = split_by_pieces(model, table)
        if split_model is None:
            shared_files[n] = None
            checks.append((paths[n], {"initializers": views, "in_place": True}, False))
        else:
            split = root / f"{n}.shared.onnx"
            onnx.save(split_model, str(split))
            shared_files[n] = split.name
            checks.append((split, {"initializers": views}, False))
        for graph, kw, exact in checks:
            got = OnnxRuntimeBackend(graph, threads=1, **kw).run(probe)
            same = all(np.array_equal(a, b) if exact else np.allclose(a, b, rtol=1e-4, atol=1e-5)
                       for a, b in zip(before[n], got, strict=True))
            if not same:
                raise ExportError(f"{graph.name} reads its tensors from {WEIGHTS_FILE} but its outputs differ from "
                                  f"the self-contained {n}.onnx; please report this model")
    return entry, shared_files
