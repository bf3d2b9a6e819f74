"""SNNK blocks: finding a model's MLP blocks, the bundled SNNK module that replaces one, and the surgery.

Part of the SNNK method (Sehanobish, Choromanski et al., "Scalable Neural Network Kernels", ICLR 2024,
arXiv 2310.13225; see :mod:`slimkit.compress.snnk.method`).

**Finding blocks** traces one forward with hooks on every module (not the channel-dependency graph):
a chain is a sequence of calls ``Linear, activation, [Dropout...], Linear, ...`` where each call's input
equals the previous call's output. The activation is a module (``nn.ReLU``, ``nn.GELU``, ...) or a call
such as ``F.gelu`` in ``forward``, recognised by its values. Every contiguous sub-chain with at least one
hidden layer is a candidate, named after the one module whose forward is exactly that chain when there
is one (``"blocks.0.ffn"``), else ``"<first linear>..<last linear>"`` (``"body.2..head"``). A candidate
is kept only if swapping it for one module leaves the model's output unchanged, i.e. nothing else reads
its intermediate tensors. Functional activations need the whole-module form.

**Bundling.** A chain with hidden layers ``f_k(W_k h + b_k)`` and output ``W_out h + b_out`` becomes
``y = Theta phi_L(... phi_1(x)) + c``: a fixed random input tower and one trained matrix ``Theta``
(:class:`SNNKBlock`). From trained weights, ``Theta`` is the paper's folded parameter tower
(:func:`init_from_weights`): ``A_1 = Psi_1(W_1, b_1)``, ``A_k = Psi_k(W_k A_{k-1}, b_k)``,
``Theta = W_out A_L``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from ..modules import hooks, replace_submodule
from ..outputs import not_one_tensor, selector_of
from .features import RandomFeatures

__all__ = ["Block", "SNNKBlock", "find_blocks", "default_blocks", "replace_block", "block_io", "snnk_module",
           "block_as_module", "build_block", "calibrate_scales", "init_from_weights", "linears_of", "unsupported"]

_PASS = (nn.Dropout, nn.Identity)  # identity at inference
_ACTS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Softplus, nn.Mish,
         nn.Hardswish, nn.ReLU6, nn.CELU, nn.SELU, nn.Hardtanh, nn.Hardsigmoid, nn.Softsign)
# activations recognised by value when forward calls them as functions
_FUNCTIONAL = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
               "silu": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


@dataclass(frozen=True)
class Block:
    """One replaceable chain.

    ``linears`` are module names in order (the last is the output layer); ``modules`` every module of
    the chain in call order (linears, activation modules, dropouts); ``module`` the one module whose
    forward is exactly the chain, when there is one (then it is replaced whole), else ``""``.
    """

    name: str
    linears: tuple[str, ...]
    activations: tuple[str, ...]  # one per hidden layer, e.g. ("ReLU",) or ("gelu",) for F.gelu
    modules: tuple[str, ...]
    module: str | None
    in_features: int
    out_features: int

    @property
    def depth(self) -> int:
        """Hidden layers of the chain (its linears minus one)."""
        return len(self.linears) - 1

    def to_dict(self) -> dict:
        """The block as JSON-ready data (read back by :meth:`from_dict`)."""
        return {"name": self.name, "linears": list(self.linears), "activations": list(self.activations),
                "modules": list(self.modules), "module": self.module, "in_features": self.in_features,
                "out_features": self.out_features}

    @classmethod
    def from_dict(cls, d: dict) -> Block:
        """The block :meth:`to_dict` wrote."""
        return cls(d["name"], tuple(d["linears"]), tuple(d["activations"]), tuple(d["modules"]), d["module"],
                   d["in_features"], d["out_features"])


def _trace(model: nn.Module, example_input: torch.Tensor):
    """Every module call of one eval-mode forward: ``[(name, input, output)]`` in call order."""
    calls: list[tuple[str, torch.Tensor | None, torch.Tensor | None]] = []

    def hook(name):
        def fn(mod, args, out):
            x = args[0].detach() if args and isinstance(args[0], torch.Tensor) else None
            calls.append((name, x, out.detach() if isinstance(out, torch.Tensor) else None))
        return fn

    was = model.training
    model.eval()
    try:
        with hooks(m.register_forward_hook(hook(n)) for n, m in model.named_modules()), torch.no_grad():
            out = model(example_input)
    except Exception as e:
        raise ConfigError(f"{type(model).__name__} does not run on example_input of shape "
                          f"{tuple(example_input.shape)} ({type(e).__name__}: {e}); pass an example_input "
                          "the model accepts") from e
    finally:
        model.train(was)
    return calls, out


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def _activation(mod: nn.Module, x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
    """An activation module: one of ``_ACTS``, or a module without parameters or children whose output is a
    recognised activation of its input (a library's own class, such as Hugging Face's ``GELUActivation``)."""
    if isinstance(mod, _ACTS):
        return True
    if isinstance(mod, _PASS) or x is None or y is None or _same(x, y):  # an identity is no activation
        return False
    if any(True for _ in mod.parameters()) or any(True for _ in mod.children()):
        return False
    return any(_same(fn(x), y) for fn in _FUNCTIONAL.values())


def _chains(model: nn.Module, calls: list) -> list[list[tuple[str, str]]]:
    """Maximal traced chains as ``[(module name, role)]``, role ``L`` / ``A`` / ``P`` / ``f:<name>``."""
    counts: dict[str, int] = {}
    for n, _, _ in calls:
        counts[n] = counts.get(n, 0) + 1
    leaf = [(n, x, y) for n, x, y in calls if isinstance(model.get_submodule(n), (nn.Linear, *_PASS))
            or _activation(model.get_submodule(n), x, y)]
    chains, i = [], 0
    while i < len(leaf):
        n, _, y = leaf[i]
        if not isinstance(model.get_submodule(n), nn.Linear) or counts[n] != 1:
            i += 1
            continue
        chain, prev, act, j = [(n, "L")], y, None, i + 1
        while j < len(leaf):
            cn, cx, cy = leaf[j]
            mod = model.get_submodule(cn)
            if counts[cn] != 1:
                break
            if not _same(prev, cx):
                # an activation called as a function (F.gelu) between the last Linear and this module
                f = next((k for k, fn in _FUNCTIONAL.items() if _same(fn(prev), cx)), None) if act is None else None
                if f is None or chain[-1][1] != "L":
                    break
                act = f"f:{f}"
                chain.append(("", act))
            if isinstance(mod, nn.Linear):
                if act is None:
                    break
                act = None
                chain.append((cn, "L"))
            elif _activation(mod, cx, cy):
                if act is not None:
                    break
                act = type(mod).__name__
                chain.append((cn, "A"))
            else:
                chain.append((cn, "P"))
            prev, j = cy, j + 1
        while chain[-1][1] != "L":  # a chain ends at a Linear
            chain.pop()
        if sum(r == "L" for _, r in chain) > 1:
            chains.append(chain)
        i = j if len(chain) > 1 else i + 1
    return chains


class _Exact(nn.Module):
    """The original chain as one module: the probe that checks a surgery is valid."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x):
        for p in self.parts:
            x = p(x)
        return x


def _sub_blocks(model: nn.Module, chain: list[tuple[str, str]], calls: list) -> list[Block]:
    """Every contiguous sub-chain with at least one hidden layer, named and checked."""
    lin_pos = [k for k, (_, r) in enumerate(chain) if r == "L"]
    by_name = {n: (x, y) for n, x, y in calls}
    owners = [(n, x, y) for n, x, y in calls if not isinstance(model.get_submodule(n), (nn.Linear, *_ACTS, *_PASS))]
    out = []
    for a in range(len(lin_pos)):
        for b in range(a + 1, len(lin_pos)):
            part = chain[lin_pos[a]:lin_pos[b] + 1]
            mods = tuple(n for n, _ in part if n)
            lins = tuple(n for n, r in part if r == "L")
            acts = tuple(r if r.startswith("f:") else n for n, r in part if r == "A" or r.startswith("f:"))
            acts = tuple(a_[2:] if a_.startswith("f:") else type(model.get_submodule(a_)).__name__ for a_ in acts)
            x_in, y_out = by_name[lins[0]][0], by_name[lins[-1]][1]
            module = None
            for n, x, y in owners:  # a module whose forward is exactly this chain
                if not n and selector_of(model) is not None:  # the root keeps its output selector
                    continue
                leaves = {m for m, sub in model.get_submodule(n).named_modules(prefix=n) if not list(sub.children())}
                if leaves == set(mods) and _same(x, x_in) and _same(y, y_out):
                    module = n
            first, last = model.get_submodule(lins[0]), model.get_submodule(lins[-1])
            out.append(Block(module or f"{lins[0]}..{lins[-1]}", lins, acts, mods, module,
                             first.in_features, last.out_features))
    return out


def _valid(model: nn.Module, blk: Block, example_input: torch.Tensor, reference: torch.Tensor) -> bool:
    probe = copy.deepcopy(model).eval()
    parts = [copy.deepcopy(model.get_submodule(n)) for n in blk.modules]
    if any(a in _FUNCTIONAL for a in blk.activations):
        if blk.module is None:
            return False
        parts = [copy.deepcopy(model.get_submodule(blk.module))]
    probe = replace_block(probe, blk, _Exact(parts))
    with torch.no_grad():
        try:
            out = probe(example_input)
        except Exception:  # noqa: BLE001 - any failure means the surgery is not valid
            return False
    return isinstance(out, torch.Tensor) and _same(out, reference)


def find_blocks(model: nn.Module, example_input: torch.Tensor) -> list[Block]:
    """Every replaceable ``Linear (activation Linear)+`` chain of ``model``, in call order.

    A chain is found by tracing one forward (the output of each Linear feeds an activation module or
    a recognised functional one, then the next Linear) and kept only if replacing it by one module
    leaves the model's output unchanged (no other consumer of its intermediate tensors).
    """
    calls, reference = _trace(model, example_input)
    if not isinstance(reference, torch.Tensor):
        raise not_one_tensor(type(model).__name__, reference)
    blocks = []
    for chain in _chains(model, calls):
        blocks += [b for b in _sub_blocks(model, chain, calls) if _valid(model, b, example_input, reference)]
    return blocks


def default_blocks(blocks: list[Block]) -> list[Block]:
    """The default targets: one-hidden-layer blocks, taken from the output end of each chain backwards so
    that none overlaps (an MLP's classifier head first, then earlier pairs)."""
    chosen: list[Block] = []
    used: set[str] = set()
    for b in sorted((b for b in blocks if b.depth == 1), key=blocks.index, reverse=True):
        if not used & set(b.linears):
            chosen.append(b)
            used |= set(b.linears)
    return sorted(chosen, key=blocks.index)


def replace_block(model: nn.Module, blk: Block, new: nn.Module) -> nn.Module:
    """Put ``new`` in place of ``blk`` (in place): the whole module, or the first Linear with the rest of
    the chain made identities. Returns the model (``new`` itself when the block is the root)."""
    if blk.module is not None:
        return replace_submodule(model, blk.module, new)
    model = replace_submodule(model, blk.modules[0], new)
    for n in blk.modules[1:]:
        model = replace_submodule(model, n, nn.Identity())
    return model


def block_io(model: nn.Module, blk: Block) -> tuple[nn.Module, nn.Module]:
    """The modules whose input is the block's input and whose output is its output (hook points)."""
    if blk.module is not None:
        m = model.get_submodule(blk.module)
        return m, m
    return model.get_submodule(blk.modules[0]), model.get_submodule(blk.modules[-1])


def snnk_module(model: nn.Module, blk: Block) -> nn.Module:
    """The module standing at ``blk``'s place (the :class:`SNNKBlock` once replaced)."""
    return model.get_submodule(blk.modules[0] if blk.module is None else blk.module)


def block_as_module(model: nn.Module, blk: Block) -> nn.Module:
    """The original block as one module (what a ``targets`` filter receives)."""
    if blk.module is not None:
        return model.get_submodule(blk.module)
    return nn.Sequential(*[model.get_submodule(n) for n in blk.modules])


class SNNKBlock(nn.Module):
    """A bundled SNNK block: ``y = theta @ phi_L(... phi_1(x)) + bias`` over the last dim.

    Only ``theta`` (``out x m``) and ``bias`` are parameters; each ``phi_k`` is a
    :class:`~slimkit.compress.snnk.features.RandomFeatures` whose projection is a buffer regenerable
    from ``seed``. Exports to ONNX as MatMul / elementwise ops.

    Example:
        >>> blk = SNNKBlock(40, 10, m=32)
        >>> blk(torch.randn(4, 40)).shape
        torch.Size([4, 10])
    """

    def __init__(self, in_features: int, out_features: int, m: int, *, depth: int = 1, kind: str = "relu",
                 seed: int = 0, orthogonal: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.m = in_features, out_features, m
        self.features = nn.ModuleList(
            RandomFeatures(in_features if k == 0 else m, m, kind=kind, seed=seed * 1000 + k, orthogonal=orthogonal)
            for k in range(depth))
        self.theta = nn.Parameter(torch.zeros(out_features, m))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The input tower: ``(..., in) -> (..., m)``."""
        for phi in self.features:
            x = phi(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in) -> (..., out)``: the random-feature tower, then the learned linear map."""
        return F.linear(self.embed(x), self.theta, self.bias)


@torch.no_grad()
def calibrate_scales(block: SNNKBlock, linears: list[nn.Linear], x: torch.Tensor) -> None:
    """Set each layer's input scale from sample block inputs ``x`` (rows) and the folded weights
    ``W_k A_{k-1}`` (layer ``k`` of the bundle sees ``phi_{k-1}(...)``, so its weights are folded)."""
    a = None
    for phi, lin in zip(block.features, linears[:-1]):
        w_eff = lin.weight.double() if a is None else lin.weight.double() @ a
        x_rms = x.double().norm(dim=-1).pow(2).mean().sqrt()
        phi.calibrate(x_rms, w_eff.norm(dim=1).pow(2).mean().sqrt())
        a = phi.psi(w_eff, lin.bias)
        x = phi(x)


@torch.no_grad()
def init_from_weights(block: SNNKBlock, linears: list[nn.Linear]) -> None:
    """Fold the chain's trained weights into ``theta`` (the paper's bundled parameter tower)."""
    a = None
    for phi, lin in zip(block.features, linears[:-1]):
        w_eff = lin.weight.double() if a is None else lin.weight.double() @ a  # W_k A_{k-1}: (l_k, m)
        a = phi.psi(w_eff, lin.bias)  # A_k: (l_k, m)
    out = linears[-1]
    block.theta.copy_((out.weight.double() @ a).float())
    block.bias.copy_(out.bias if out.bias is not None else torch.zeros_like(block.bias))


def build_block(blk: Block, index: int, m: int, *, kind: str, seed: int, orthogonal: bool) -> SNNKBlock:
    """An :class:`SNNKBlock` shell with ``blk``'s shapes (theta zero, scales 1); ``index`` is the block's
    position among the targets, so every block of a model gets its own projections."""
    return SNNKBlock(blk.in_features, blk.out_features, m, depth=blk.depth, kind=kind, seed=seed * 101 + index,
                     orthogonal=orthogonal)


def linears_of(model: nn.Module, blk: Block) -> list[nn.Linear]:
    """The ``nn.Linear`` modules of ``blk`` in ``model`` (the model's own, not copies)."""
    return [model.get_submodule(n) for n in blk.linears]  # read only: no copies


def unsupported(model: nn.Module) -> UnsupportedModelError:
    """The error for a model in which SNNK finds no block to replace (it names the model's Linear layers)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    found = (f"its nn.Linear layers ({', '.join(linears[:6])}{', ...' if len(linears) > 6 else ''}) form no such "
             "chain" if linears else "it has no nn.Linear layer (convolutions and recurrent layers are not replaced)")
    return UnsupportedModelError(
        f"SNNK found no replaceable block in {type(model).__name__}: it replaces chains Linear -> activation "
        f"-> Linear whose hidden tensors nothing else reads (a Transformer FFN, an MLP or classifier head); {found}")
