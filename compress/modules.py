"""Module surgery the methods share: put a module at a dotted name, and hooks that are always removed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["replace_submodule", "hooks"]


def replace_submodule(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at the dotted ``name`` inside ``model``; returns ``model`` (``new`` when ``name`` is "")."""
    if not name:
        return new
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return model


@contextlib.contextmanager
def hooks(handles: Iterable[RemovableHandle]) -> Iterator[None]:
    """Keep the given hook handles registered for the ``with`` block, and remove them however it ends.

    Example:
        >>> with hooks(m.register_forward_hook(fn) for m in model.modules()):  # doctest: +SKIP
        ...     model(x)
    """
    handles = list(handles)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
