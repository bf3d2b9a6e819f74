"""The model side of GBNN: finding and checking the replaced head, its input features, the new model.

Part of GBNN (arXiv 1909.12098; see :mod:`slimkit.compress.boost.method`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from ..modules import hooks
from ..train import device_of

__all__ = ["find_head", "check_head", "head_features", "head_targets", "with_head"]


def find_head(model: nn.Module, name: str | None, example: torch.Tensor) -> tuple[str, nn.Linear]:
    """The replaced Linear: ``name``, or the last ``nn.Linear`` to run on ``example``."""
    modules = dict(model.named_modules())
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    shown = [n or "''" for n in linears]
    if name is None:
        ran: list[str] = []
        with hooks(modules[n].register_forward_hook(lambda *_, _n=n: ran.append(_n)) for n in linears), \
                torch.no_grad():
            model(example)
        if not ran:
            raise UnsupportedModelError(f"{type(model).__name__} runs no nn.Linear on the example input, so it has "
                                        "no head to replace; boost grows a new Linear head on its features")
        return ran[-1], modules[ran[-1]]  # type: ignore[return-value]
    if name not in modules:
        raise ConfigError(f"head={name!r} is not a module of {type(model).__name__}; its nn.Linear layers are "
                          f"{shown} (pass one of these qualified names)")
    if not isinstance(modules[name], nn.Linear):
        raise ConfigError(f"head={name!r} is a {type(modules[name]).__name__}, not an nn.Linear; boost replaces a "
                          f"Linear head: pass one of {shown}")
    return name, modules[name]  # type: ignore[return-value]


def check_head(model: nn.Module, name: str, head: nn.Linear, example: torch.Tensor) -> None:
    """The head must run once on (batch, features) and its output must be the model's output."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    with hooks([head.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))]), torch.no_grad():
        out = model(example)
    label = f"head {name or type(head).__name__!r}"
    if len(seen) != 1:
        raise UnsupportedModelError(f"{label} runs {len(seen)} times per forward pass; boost replaces a head "
                                    "that runs once: pass head= the model's final Linear")
    x, h = seen[0]
    if x.dim() != 2:
        raise UnsupportedModelError(f"{label} receives inputs of shape {tuple(x.shape)}; boost needs one feature "
                                    "vector per sample, (batch, features): pass head= a Linear on pooled features")
    same = (isinstance(out, torch.Tensor) and out.numel() == h.numel() and out.shape[:1] == h.shape[:1]
            and torch.equal(out.reshape(h.shape), h))
    if not same:
        raise UnsupportedModelError(f"the output of {type(model).__name__} is not the output of {label} (it is "
                                    "transformed after the head); boost fits the head to the model's loss, so "
                                    "pass head= the Linear whose output the model returns")


@torch.no_grad()
def head_features(model: nn.Module, head: nn.Linear, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's inputs (N, F) over ``loader`` and the targets, in one pass of the frozen model."""
    feats: list[torch.Tensor] = []
    targets, device = [], device_of(model)
    with hooks([head.register_forward_hook(lambda _m, args, _out: feats.append(args[0].detach().float().cpu()))]):
        for x, y in loader:
            model(x.to(device))
            targets.append(y)
    if not targets:
        raise ConfigError("a loader yielded no samples; pass loaders over non-empty datasets")
    return torch.cat(feats), torch.cat(targets)


def head_targets(y: torch.Tensor, task: str, outputs: int, split: str) -> torch.Tensor:
    """``y`` checked and shaped as the head's targets: int64 labels in ``[0, outputs)``, or ``(N, outputs)`` floats."""
    if task == "classification":
        if y.dtype.is_floating_point or y.dim() != 1:
            raise ConfigError(f"task='classification' needs integer class labels of shape (N,) in the {split} "
                              f"loader, got {y.dtype} {tuple(y.shape)}; use task='regression' for real targets")
        if int(y.min()) < 0 or int(y.max()) >= outputs:
            raise ConfigError(f"the {split} labels span {int(y.min())}..{int(y.max())} but the head has {outputs} "
                              "outputs (one logit per class)")
        return y.long()
    if y.numel() != y.shape[0] * outputs:
        raise ConfigError(f"task='regression' needs {outputs} target value(s) per sample (the head's outputs) in "
                          f"the {split} loader, got targets of shape {tuple(y.shape)}")
    return y.float().reshape(-1, outputs)


def with_head(root: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """``root`` with the module at ``name`` replaced: the modules on the path are shallow copies, every
    other module (the frozen backbone) is shared, not copied."""
    if name == "":
        return new
    *path, last = name.split(".")
    top = parent = copy.copy(root)
    parent._modules = type(root._modules)(root._modules)
    for part in path:
        child = copy.copy(parent._modules[part])
        child._modules = type(child._modules)(child._modules)
        parent._modules[part] = child
        parent = child
    parent._modules[last] = new
    return top
