"""Helpers of the SNNK rows: the truncated-SVD low-rank baseline, cost counting, onnxruntime latency."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.common import raw_session
from bench.core import Measurement, Timing
from bench.speed import measurements, timed
from slimkit import export
from slimkit.compress import count_macs
from slimkit.compress.snnk.blocks import Block, snnk_module
from slimkit.compress.snnk.features import RandomFeatures

__all__ = ["learned_projection", "low_rank", "rank_for", "lowrank_block_params", "lowrank_block_macs", "snnk_block_cost", "latencies"]


def _factor(lin: nn.Linear, rank: int) -> nn.Sequential:
    """``lin`` as ``Linear(in, r, bias=False) -> Linear(r, out)`` from its truncated SVD."""
    u, s, vh = torch.linalg.svd(lin.weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    down, up = nn.Linear(lin.in_features, rank, bias=False), nn.Linear(rank, lin.out_features)
    with torch.no_grad():
        down.weight.copy_((root[:, None] * vh[:rank]).float())  # (r, in)
        up.weight.copy_((u[:, :rank] * root).float())  # (out, r)
        up.bias.copy_(lin.bias if lin.bias is not None else torch.zeros(lin.out_features))
    return nn.Sequential(down, up)


def _worth(lin: nn.Linear, rank: int) -> bool:
    """Factorising only pays below the rank where the two factors outgrow the dense matrix."""
    return rank * (lin.in_features + lin.out_features) < lin.in_features * lin.out_features


def low_rank(model: nn.Module, blocks: list[Block], rank: int) -> nn.Module:
    """A copy of ``model`` with every Linear of ``blocks`` factorised at ``rank`` (truncated SVD); a
    Linear for which that rank would not save anything stays dense."""
    out = copy.deepcopy(model)
    for blk in blocks:
        for name in blk.linears:
            parent, _, leaf = name.rpartition(".")
            owner = out.get_submodule(parent) if parent else out
            lin = out.get_submodule(name)
            if _worth(lin, rank):
                setattr(owner, leaf, _factor(lin, rank))
    return out


def lowrank_block_params(model: nn.Module, blocks: list[Block], rank: int) -> int:
    return sum((rank * (lin.in_features + lin.out_features) if _worth(lin, rank) else lin.weight.numel())
               + lin.out_features for blk in blocks for lin in (model.get_submodule(n) for n in blk.linears))


def lowrank_block_macs(model: nn.Module, blocks: list[Block], rank: int, tokens: int) -> int:
    return tokens * sum(rank * (lin.in_features + lin.out_features) if _worth(lin, rank) else lin.weight.numel()
                        for blk in blocks for lin in (model.get_submodule(n) for n in blk.linears))


def rank_for(model: nn.Module, blocks: list[Block], budget: int, *, macs: bool = False, tokens: int = 1) -> int:
    """The largest rank whose factorised blocks hold at most ``budget`` parameters (or MACs); 0: none fits.
    Capped where factorising stops paying off for every Linear (then the blocks are dense)."""
    cost = (lambda r: lowrank_block_macs(model, blocks, r, tokens)) if macs else \
        (lambda r: lowrank_block_params(model, blocks, r))
    cap = max(min(lin.in_features, lin.out_features) for blk in blocks
              for lin in (model.get_submodule(n) for n in blk.linears))
    r = 0
    while r < cap and cost(r + 1) <= budget:
        r += 1
    return r


def learned_projection(student: nn.Module) -> nn.Module:
    """Diagnostic, not SNNK: a copy of ``student`` whose random projections are trainable parameters."""
    out = copy.deepcopy(student)
    for mod in out.modules():
        if isinstance(mod, RandomFeatures):
            proj = mod.proj.detach().clone()
            del mod.proj  # the buffer; a parameter of the same name takes its place
            mod.proj = nn.Parameter(proj)
    return out


def snnk_block_cost(student: nn.Module, blocks: list[Block], example_input: torch.Tensor) -> dict:
    """Parameters, stored random-projection floats and MACs of the SNNK blocks of ``student``."""
    mods = [snnk_module(student, b) for b in blocks]
    params = sum(p.numel() for m in mods for p in m.parameters())
    buffers = sum(t.numel() for m in mods for n, t in m.named_buffers() if n.endswith("proj"))
    return {"block_params": params, "block_projection_floats": buffers,
            "macs": count_macs(student, example_input)}


def latencies(models: dict[str, nn.Module], example: torch.Tensor, *, timing: Mapping[str, Timing], group: str,
              batches=(1, 256)) -> tuple[dict[str, dict[str, float]], list[Measurement]]:
    """p50 milliseconds per call of every model through onnxruntime (1 thread), models interleaved, with
    the counts of ``timing["b<batch>"]``; and the per-round samples (baseline: the teacher)."""
    result: dict[str, dict[str, float]] = {name: {} for name in models}
    ms: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="snnk-bench-") as tmp:
        sessions = {}
        for name, model in models.items():
            path = export.to_onnx(model.eval(), example[:1], Path(tmp) / f"{abs(hash(name))}.onnx")
            sessions[name] = raw_session(path, threads=1)
        for batch in batches:
            x = example[:1].expand(batch, *example.shape[1:]).contiguous().numpy()
            fns = {}
            for name, sess in sessions.items():
                feed = {sess.get_inputs()[0].name: x}

                def fn(n, sess=sess, feed=feed):
                    for _ in range(n):
                        sess.run(None, feed)
                fns[name] = fn
            t = timing[f"b{batch}"]
            per = timed(fns, t)
            for name, v in per.items():
                result[name][f"batch{batch}_p50_ms"] = float(np.median(v) * 1e3)
            ms += measurements(per, group=f"{group}-b{batch}", calls=t.iterations, timing=f"b{batch}",
                               baseline="teacher" if "teacher" in per else None, extra={"batch": batch, "threads": 1})
    return result, ms
