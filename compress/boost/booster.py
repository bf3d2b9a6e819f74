"""The GBNN booster: boosting stages fitted on a feature matrix, merged into one hidden layer.

Part of GBNN (arXiv 1909.12098; see :mod:`slimkit.compress.boost.method`).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.runtime.errors import ConfigError

from ..train import progress_bar, set_seed
from .config import ACTIVATIONS, BoostConfig

__all__ = ["Booster", "boosted_head"]


def boosted_head(in_features: int, hidden: int, out_features: int, activation: str) -> nn.Sequential:
    """The merged layer's shape: ``Linear(in, hidden) -> activation -> Linear(hidden, out)``."""
    return nn.Sequential(OrderedDict(hidden=nn.Linear(in_features, hidden), act=ACTIVATIONS[activation](),
                                     out=nn.Linear(hidden, out_features)))


class Booster:
    """GBNN on a feature matrix: fit the stages, predict with the first ``t``, merge them into one layer.

    Args:
        config: the boosting options (``head`` is not used here).

    Example:
        >>> b = Booster(BoostConfig(stages=4, units=4)).fit(x, y)     # x (N, F) float, y (N,) labels
        >>> torch.allclose(b.head(2)(x), b.predict(x, 2), atol=1e-5)
        True
    """

    def __init__(self, config: BoostConfig):
        self.config = config
        self.f0 = torch.zeros(0)
        self.mean = self.std = torch.zeros(0)
        self.learners: list[nn.Sequential] = []  # h_t on standardised features
        self.rhos: list[float] = []               # shrinkage x Newton step, per stage
        self.train_loss: list[float] = []         # loss of F after each stage on the training rows

    # -- the loss -------------------------------------------------------------------------------------
    def _loss(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.task == "classification":
            return F.cross_entropy(f, y)
        return F.mse_loss(f, y)

    def _residuals(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.task == "classification":  # -dL/dF of the summed cross-entropy
            return F.one_hot(y, f.shape[1]).to(f.dtype) - f.softmax(1)
        return y - f

    def _newton_step(self, f: torch.Tensor, h: torch.Tensor, r: torch.Tensor) -> float:
        """argmin over rho of the loss's second-order expansion along ``h`` at ``F``: g / H, where
        ``g = sum <h, r>`` and ``H = sum h^T (diag p - p p^T) h`` (classification) or ``sum |h|^2``."""
        g = (h * r).sum()
        if self.config.task == "classification":
            p = f.softmax(1)
            curv = ((h * h * p).sum() - ((h * p).sum(1) ** 2).sum())
        else:
            curv = (h * h).sum()
        if curv <= 1e-12 * max(1, h.shape[0]):  # h carries no signal (or a constant shift of the logits)
            return 0.0
        return float(g / curv)

    # -- fitting --------------------------------------------------------------------------------------
    def _fit_learner(self, x: torch.Tensor, r: torch.Tensor) -> nn.Sequential:
        cfg = self.config
        net = boosted_head(x.shape[1], cfg.units, r.shape[1], cfg.activation)
        opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=cfg.max_iter, history_size=20,
                                tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")
        weights = (net.hidden.weight, net.out.weight)
        reg = cfg.l2 / (2 * x.shape[0])

        def closure():
            opt.zero_grad()
            loss = 0.5 * ((net(x) - r) ** 2).sum(1).mean() + reg * sum((w * w).sum() for w in weights)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return net.requires_grad_(False).eval()

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, *, classes: int | None = None,
            progress: bool = False) -> Booster:
        """Boost on features ``x`` (N, F) and targets ``y``: class indices (N,) or values (N, K).

        ``classes`` is the number of logits (default: the largest label + 1).
        """
        cfg = self.config
        set_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        if x.dim() != 2 or x.shape[0] < 2 or len(y) != x.shape[0]:
            raise ConfigError(f"boosting needs features (N >= 2, F) and N targets, got features {tuple(x.shape)} "
                              f"and targets {tuple(y.shape)}")
        x = x.float()
        self.mean, self.std = x.mean(0), x.std(0)
        self.std[self.std < 1e-8] = 1.0  # constant features stay at 0
        xs = (x - self.mean) / self.std  # (N, F)
        n = x.shape[0]
        if cfg.task == "classification":
            k = classes or int(y.max()) + 1
            prior = torch.bincount(y, minlength=k).float().clamp_min(0.5) / n
            self.f0 = prior.log() - prior.log().mean()  # argmin of the cross-entropy over constants
        else:
            self.f0 = y.mean(0)
        f = self.f0.expand(n, -1).clone()  # (N, K)
        self.learners, self.rhos, self.train_loss = [], [], []
        m = max(1, round(cfg.subsample * n))
        bar = progress_bar(range(cfg.stages), enabled=progress, desc="boost", total=cfg.stages)
        for _ in bar:
            r = self._residuals(f, y)
            rows = torch.randperm(n, generator=gen)[:m] if m < n else slice(None)
            net = self._fit_learner(xs[rows], r[rows])
            h = net(xs)
            rho = cfg.shrinkage * self._newton_step(f, h, r)
            f += rho * h
            self.learners.append(net)
            self.rhos.append(rho)
            self.train_loss.append(float(self._loss(f, y)))
            if progress:
                bar.set_postfix(loss=f"{self.train_loss[-1]:.4g}")  # type: ignore[attr-defined]
        if 0.0 in self.rhos:
            warnings.warn(f"{self.rhos.count(0.0)} boosting stage(s) found no direction that lowers the loss "
                          "and contribute nothing; the residuals may already be fitted", stacklevel=3)
        return self

    # -- using the stages ----------------------------------------------------------------------------
    def _stages(self, t: int | None) -> int:
        t = len(self.learners) if t is None else t
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= len(self.learners):
            raise ConfigError(f"stages={t!r}: this booster has stages 0..{len(self.learners)}")
        return t

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """``F0 + sum_{s <= t} rho_s h_s(x)``, stage by stage (raw logits or values, (N, K))."""
        xs = (x.float() - self.mean) / self.std
        f = self.f0.expand(x.shape[0], -1).clone()
        for net, rho in zip(self.learners[:self._stages(t)], self.rhos):
            f += rho * net(xs)
        return f

    @torch.no_grad()
    def head(self, t: int | None = None) -> nn.Sequential:
        """The first ``t`` stages merged into one layer (``t * units`` hidden units), standardisation folded
        into the first Linear and the cumulative output bias of stage ``t``."""
        t = self._stages(t)
        if t == 0:
            raise ConfigError("a merged head needs at least one stage; stages=0 is the constant F0")
        nets, rhos = self.learners[:t], self.rhos[:t]
        w1 = torch.cat([n.hidden.weight for n in nets])  # (t J, F), on standardised inputs
        b1 = torch.cat([n.hidden.bias for n in nets])
        w2 = torch.cat([rho * n.out.weight for n, rho in zip(nets, rhos)], 1)  # (K, t J)
        b2 = self.f0 + sum(rho * n.out.bias for n, rho in zip(nets, rhos))
        merged = boosted_head(w1.shape[1], w1.shape[0], w2.shape[0], self.config.activation)
        merged.hidden.weight.copy_(w1 / self.std)  # W (x - mu) / sd = (W / sd) x - W (mu / sd)
        merged.hidden.bias.copy_(b1 - w1 @ (self.mean / self.std))
        merged.out.weight.copy_(w2)
        merged.out.bias.copy_(b2)
        return merged.eval()
