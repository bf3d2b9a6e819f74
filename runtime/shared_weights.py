"""One copy of a nested family's weights: which tensors are leading slices of others, and the bundle's
weights file as one buffer that every variant reads through views.

A SortedNet width's weight is the top-left corner ``W[:a, :b]`` of the next width's; a boosting stage's
is a prefix of the whole. :func:`group_leading_slices` finds such tensors from their data alone (the
exporter uses it to write the weights file once, the torch backend to alias one state dict);
:func:`read_weights` and :func:`tensor_views` give ``runtime.load(dir, share_weights=True)`` the buffer
and the arrays its onnxruntime sessions use in place. numpy only, like the rest of the runtime.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from .errors import BundleError
from .manifest import WeightsEntry, resolve_file

__all__ = ["ALIGN", "is_leading_slice", "SliceIndex", "group_leading_slices", "read_weights", "tensor_views"]

ALIGN = 64  # the buffer and every block in it start on a cache line


def _bits(a: np.ndarray) -> np.ndarray:
    """``a`` as unsigned ints of its item size, so equal bits compare equal (NaN and -0.0 included)."""
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind in "fc" and a.dtype.itemsize in (1, 2, 4, 8) else a


def is_leading_slice(root: np.ndarray, t: np.ndarray) -> bool:
    """True when ``t`` equals ``root[:t.shape[0], :t.shape[1], ...]`` bit for bit (same dtype and rank)."""
    if root.dtype != t.dtype or root.ndim != t.ndim or any(s > r for s, r in zip(t.shape, root.shape, strict=True)):
        return False
    head = root[tuple(slice(0, s) for s in t.shape)]
    return bool(np.array_equal(_bits(np.ascontiguousarray(head)), _bits(np.ascontiguousarray(t))))


class SliceIndex:
    """Tensors seen so far, found again by data: :meth:`find` names the first one that ``t`` is a
    leading slice of. Add the largest tensors first, so that they become the roots."""

    def __init__(self) -> None:
        self._buckets: dict[tuple, list[tuple[Hashable, np.ndarray]]] = {}  # (dtype, rank, first bits)

    @staticmethod
    def _key(a: np.ndarray) -> tuple:
        return a.dtype.str, a.ndim, _bits(np.ascontiguousarray(a.reshape(-1)[:1])).tobytes()

    def find(self, t: np.ndarray) -> Hashable | None:
        """The key of a tensor ``t`` is a leading slice of, or None."""
        for key, root in self._buckets.get(self._key(t), ()):
            if is_leading_slice(root, t):
                return key
        return None

    def add(self, key: Hashable, root: np.ndarray) -> None:
        """Index ``root`` under ``key``: later tensors that are leading slices of it find ``key``."""
        self._buckets.setdefault(self._key(root), []).append((key, root))


def group_leading_slices(tensors: Mapping[Hashable, np.ndarray] | Sequence[tuple[Hashable, np.ndarray]], *,
                         min_bytes: int = 0) -> list[tuple[Hashable, list[Hashable]]]:
    """Group tensors that are leading slices of one tensor: ``[(root key, [member keys]), ...]``.

    The largest tensors are visited first (among equal sizes, in the order given: put the largest
    variant's first), so a root contains its members; a tensor joins the first root it is a leading
    slice of, or becomes a root. Only groups with two or more members (the root counts) are returned;
    tensors under ``min_bytes`` are skipped.
    """
    items = list(tensors.items()) if isinstance(tensors, Mapping) else list(tensors)
    index, groups = SliceIndex(), {}
    for key, arr in sorted(items, key=lambda kv: -kv[1].nbytes):  # stable: the given order among equals
        if arr.nbytes < max(min_bytes, 1):
            continue
        root = index.find(arr)
        if root is None:
            index.add(key, arr)
            groups[key] = [key]
        else:
            groups[root].append(key)
    return [(root, members) for root, members in groups.items() if len(members) > 1]


def read_weights(bundle_dir: str | os.PathLike, weights: WeightsEntry) -> np.ndarray:
    """The bundle's weights file as one read-only, 64-byte aligned ``uint8`` buffer (read once, in full).

    Raises:
        BundleError: the file is missing or not the size the manifest says.
    """
    path = resolve_file(bundle_dir, weights.path)
    try:
        size = path.stat().st_size
    except OSError:
        raise BundleError(f"shared weights file {weights.path!r} is missing from {bundle_dir}; re-export the "
                          "bundle or copy the whole directory") from None
    if size != weights.bytes:
        raise BundleError(f"shared weights file {weights.path!r} has {size} bytes but the manifest says "
                          f"{weights.bytes}; the file was modified: re-export the bundle")
    raw = np.empty(size + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    buf = raw[start:start + size]
    with open(path, "rb") as f:
        if f.readinto(buf.data) != size:
            raise BundleError(f"could not read all of {weights.path!r}; check the file")
    buf.flags.writeable = False
    return buf


def tensor_views(buffer: np.ndarray, weights: WeightsEntry) -> dict[str, np.ndarray]:
    """Every tensor of ``weights.tensors`` as an array viewing ``buffer`` (no copy)."""
    out = {}
    for name, t in weights.tensors.items():
        out[name] = buffer[t.offset:t.offset + t.nbytes].view(t.dtype).reshape(t.shape)
    return out
