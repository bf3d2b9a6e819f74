"""Fitting SNNK blocks without backpropagation: calibration statistics and closed-form ridge regression.

Part of the SNNK method (Sehanobish, Choromanski et al., "Scalable Neural Network Kernels", ICLR 2024,
arXiv 2310.13225, the "fully bundled network"). With the random input tower fixed, a block is linear in
``Theta``, so the MSE-optimal ``Theta`` to the original block's outputs ``Y`` on calibration inputs is
ridge regression on ``Z = Phi(X)``: ``Theta^T = (Z^T Z + lambda I)^-1 Z^T Y`` (the intercept is not
penalised: we solve on centred ``Z`` and ``Y``). Only the sufficient statistics ``Z^T Z``, ``Z^T Y``,
sums and ``|Y|^2`` are accumulated, batch by batch in float64, so memory does not grow with the data.

``ridge="auto"`` picks ``lambda`` on a grid by the error on held-out calibration batches (every fourth
batch), then refits on all of them; one eigendecomposition serves the whole grid.

**Feature selection from a pool** (``pool > 1``, :func:`select_features`): the last random map draws
``pool * m`` seeded candidate projections, fits them all in closed form, and keeps the ``m`` whose terms
carry the most of the fit (``|theta_j| * std(z_j)``, the RMS contribution of feature ``j`` to the
outputs); the kept rows are then refitted as usual. The map stays a fixed random projection (a subset of
a seeded Gaussian draw), so the block's cost and export are unchanged. This is the data-dependent
compression of random features of Agrawal et al., "Data-dependent compression of random features for
large-scale kernel approximation", AISTATS 2019, in its simplest (greedy, one-shot) form.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..modules import hooks
from .blocks import Block, SNNKBlock, block_io
from .features import RandomFeatures

__all__ = ["Stats", "block_samples", "collect_stats", "solve_ridge", "select_features"]

# lambda as a multiple of the mean eigenvalue of the centred Z^T Z
RIDGE_GRID = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass
class Stats:
    """Sufficient statistics of a least-squares problem ``Y ~ Z Theta + c`` (float64)."""

    zz: torch.Tensor  # (m, m)
    zy: torch.Tensor  # (m, out)
    z: torch.Tensor  # (m,) sum of rows
    y: torch.Tensor  # (out,)
    yy: float  # sum of squares of Y
    n: int

    @classmethod
    def empty(cls, m: int, out: int) -> Stats:
        """The statistics of no rows, for ``m`` features and ``out`` targets."""
        f = dict(dtype=torch.float64)
        return cls(torch.zeros(m, m, **f), torch.zeros(m, out, **f), torch.zeros(m, **f),
                   torch.zeros(out, **f), 0.0, 0)

    def add(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Accumulate rows ``z`` ``(n, m)`` with their targets ``y`` ``(n, out)``."""
        self.zz += z.T @ z
        self.zy += z.T @ y
        self.z += z.sum(0)
        self.y += y.sum(0)
        self.yy += float((y * y).sum())
        self.n += z.shape[0]

    def __add__(self, other: Stats) -> Stats:
        return Stats(self.zz + other.zz, self.zy + other.zy, self.z + other.z, self.y + other.y,
                     self.yy + other.yy, self.n + other.n)

    def centred(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``Z^T Z`` and ``Z^T Y`` about the means, and the means of ``Z`` and ``Y``."""
        zm, ym = self.z / self.n, self.y / self.n
        return self.zz - self.n * torch.outer(zm, zm), self.zy - self.n * torch.outer(zm, ym), zm, ym

    def sse(self, theta_t: torch.Tensor, c: torch.Tensor) -> float:
        """Sum of squared errors of ``Z theta_t + c`` on these rows."""
        fit_y = (theta_t * self.zy).sum() + c @ self.y
        fit_sq = (theta_t * (self.zz @ theta_t)).sum() + 2 * c @ (theta_t.T @ self.z) + self.n * (c @ c)
        return float(self.yy - 2 * fit_y + fit_sq)


def _hook_io(module_in: nn.Module, module_out: nn.Module, store: dict):
    h1 = module_in.register_forward_pre_hook(lambda m, a: store.__setitem__("x", a[0].detach()))
    h2 = module_out.register_forward_hook(lambda m, a, o: store.__setitem__("y", o.detach()))
    return [h1, h2]


@torch.no_grad()
def block_samples(model: nn.Module, blk: Block, inputs: list[torch.Tensor], rows: int = 4096) -> torch.Tensor:
    """Up to ``rows`` input rows of block ``blk`` (flattened over all but the last dim)."""
    first, last = block_io(model, blk)
    store: dict = {}
    xs, seen = [], 0
    with hooks(_hook_io(first, last, store)):
        for x in inputs:
            model(x)
            xs.append(store["x"].reshape(-1, store["x"].shape[-1]))
            seen += xs[-1].shape[0]
            if seen >= rows:
                break
    return torch.cat(xs)[:rows]


@torch.no_grad()
def collect_stats(student: nn.Module, teacher: nn.Module, blk: Block, block: SNNKBlock,
                  inputs: list[torch.Tensor]) -> tuple[Stats, Stats]:
    """Statistics of ``block.embed(student's block input)`` against the teacher's block output.

    The student still holds the original block ``blk``; blocks before it may already be replaced,
    so each block is fitted on the inputs it will really see. Returns ``(fit, holdout)``.
    """
    s_store, t_store = {}, {}
    fit_stats = Stats.empty(block.m, block.out_features)
    hold = Stats.empty(block.m, block.out_features)
    with hooks(_hook_io(*block_io(student, blk), s_store) + _hook_io(*block_io(teacher, blk), t_store)):
        for i, x in enumerate(inputs):
            student(x)
            teacher(x)
            z = block.embed(s_store["x"]).reshape(-1, block.m).double().cpu()
            y = t_store["y"].reshape(-1, block.out_features).double().cpu()
            (hold if (i % 4 == 3 and len(inputs) >= 4) else fit_stats).add(z, y)
    return fit_stats, hold


def _solve(stats: Stats, lam: float, evals=None, evecs=None, zy_c=None):
    zz_c, zy, zm, ym = stats.centred()
    zy = zy if zy_c is None else zy_c
    if evals is None:
        evals, evecs = torch.linalg.eigh(zz_c)
    theta_t = evecs @ ((evecs.T @ zy) / (evals.clamp_min(0) + lam)[:, None])  # (m, out)
    return theta_t, ym - zm @ theta_t


@torch.no_grad()
def solve_ridge(block: SNNKBlock, fit_stats: Stats, hold: Stats, ridge: float | str = "auto") -> dict:
    """Set ``block.theta`` / ``block.bias`` to the ridge solution; returns the chosen lambda and errors."""
    zz_c, zy_c, _, _ = fit_stats.centred()
    evals, evecs = torch.linalg.eigh(zz_c)
    mean_eig = float(evals.clamp_min(0).mean()) or 1.0
    if ridge == "auto" and hold.n > 0:
        scores = {}
        for a in RIDGE_GRID:
            theta_t, c = _solve(fit_stats, a * mean_eig, evals, evecs, zy_c)
            scores[a] = hold.sse(theta_t, c) / max(hold.n * block.out_features, 1)
        alpha = min(scores, key=scores.get)
    else:
        alpha = 1e-4 if ridge == "auto" else float(ridge)
        scores = {}
    total = _combined(fit_stats, hold)
    theta_t, c = _solve(total, alpha * float(total.centred()[0].diagonal().clamp_min(0).mean() or 1.0))
    block.theta.copy_(theta_t.T.float().to(block.theta.device))
    block.bias.copy_(c.float().to(block.bias.device))
    var = total.yy / max(total.n * block.out_features, 1) - float((total.y / max(total.n, 1)).pow(2).mean())
    return {"ridge_alpha": alpha, "train_mse": total.sse(theta_t, c) / max(total.n * block.out_features, 1),
            "holdout_mse": scores.get(alpha, float("nan")), "target_var": var}


def _combined(fit_stats: Stats, hold: Stats) -> Stats:
    """The statistics of all calibration samples: the fit part plus the held-out part, if any."""
    return fit_stats + hold if hold.n else fit_stats


# candidates for feature selection are drawn with the layer's seed plus this (tests regenerate them)
POOL_SEED_OFFSET = 7919


@torch.no_grad()
def select_features(student: nn.Module, teacher: nn.Module, blk: Block, block: SNNKBlock,
                    inputs: list[torch.Tensor], pool: int, ridge: float | str = "auto") -> list[int]:
    """Replace the rows of ``block``'s last random projection by the best ``m`` of ``pool * m`` candidates.

    The candidates are a seeded draw of the same kind and scale (seed derived from the layer's own), fitted
    together in closed form to the teacher's block outputs; each projection row is scored by the RMS
    contribution of its feature(s) to the fit, ``|theta_j| * std(z_j)`` (a cos/sin pair counts together),
    and the top ``m`` rows, in candidate order, are copied into the block. Returns their indices in the
    candidate draw. ``block.theta`` is left for the caller to refit.
    """
    last = block.features[-1]
    cand = RandomFeatures(last.in_features, pool * last.m, kind=last.kind, seed=last.seed + POOL_SEED_OFFSET,
                          orthogonal=last.orthogonal).to(last.proj.device)
    cand.scale.copy_(last.scale)
    wide = copy.deepcopy(block)
    wide.features[-1], wide.m = cand, cand.m
    wide.theta = nn.Parameter(block.theta.new_zeros(block.out_features, cand.m))
    fit_stats, hold = collect_stats(student, teacher, blk, wide, inputs)
    solve_ridge(wide, fit_stats, hold, ridge)
    total = _combined(fit_stats, hold)
    std = (total.centred()[0].diagonal().clamp_min(0) / max(total.n, 1)).sqrt()
    score = (wide.theta.double().norm(dim=0).cpu() * std) ** 2
    rows = cand.proj.shape[0]
    score = score.view(-1, rows).sum(0).sqrt()  # cos/sin: the two features of a row together
    keep = score.topk(last.proj.shape[0]).indices.sort().values
    last.proj.copy_(cand.proj[keep.to(cand.proj.device)])
    return keep.tolist()
