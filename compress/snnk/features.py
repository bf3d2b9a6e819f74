"""SNNK random feature maps: the input map phi and the parameter map psi of one feedforward layer.

Implements the feature maps of Sehanobish, Choromanski et al., "Scalable Neural Network Kernels",
ICLR 2024, arXiv 2310.13225 (METHODS.md section 3). A layer ``y = f(W x + b)`` (``W``: ``l x d``) is
approximated by ``y ~ Psi(W, b) phi(x)`` with ``phi: R^d -> R^m`` (a fixed random projection ``G``, then
an elementwise map) and ``Psi`` of shape ``l x m`` (row ``i`` is ``psi(w_i, b_i)``). Input and parameters
meet only in the final product.

Kinds (``m`` is always the output width of ``phi``, the compute knob):

* ``"relu"`` (ReLU-SNNK): ``phi(x) = m^-1/2 ReLU(G [s x, 1])``, ``psi(w, b) = m^-1/2 ReLU(G [w / s, b])``.
  ``<phi(x), psi(w, b)>`` estimates the order-1 arc-cosine kernel of the augmented vectors
  (:func:`arccos_kernel`), *not* ``ReLU(w.x + b)``: it needs fine-tuning or a closed-form fit.
* ``"exp"`` (positive random features): ``phi(x) = m^-1/2 exp(G s x - |s x|^2 / 2)``,
  ``psi(w, b) = m^-1/2 exp(b) exp(G w / s - |w / s|^2 / 2)``; estimates ``exp(w.x + b)``.
* ``"cos"`` / ``"sin"`` (Fourier features): the complex URF ``exp(i g.x)`` rewritten in real arithmetic
  so that it exports to ONNX (no complex MatMul): with ``m / 2`` projections,
  ``phi(x) = (m/2)^-1/2 exp(|s x|^2 / 2) [cos(G s x), sin(G s x)]`` and
  ``psi(w, b) = (m/2)^-1/2 exp(G w / s - |w / s|^2 / 2) [cos b', -sin b']`` with ``b' = b`` (cos) or
  ``b - pi/2`` (sin); estimates ``cos(w.x + b)`` / ``sin(w.x + b)``. ``m`` must be even.

All three Fourier/exp estimators are unbiased by the Gaussian identity
``E[exp(a g.x - a^2|x|^2/2) exp(b g.w - b^2|w|^2/2)] = exp(a b x.w)``. The scalar ``s`` (``scale``) does
not change the target (``(s x).(w / s) = x.w``) but sets the variance, which grows like
``exp(|s x|^2 + |w / s|^2)``; :meth:`RandomFeatures.calibrate` picks ``s^2 = |w| / |x|`` (typical norms),
the minimiser of that bound. Keep these features in FP32: the exponentials overflow in FP16.

``G`` has i.i.d. N(0, 1) rows, or (``orthogonal=True``, the default) blocks of orthogonal rows with
chi-distributed norms (Yu et al., "Orthogonal Random Features", NeurIPS 2016): every row is still
marginally N(0, I), so each term stays unbiased, and the estimate's variance is lower.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.runtime.errors import ConfigError

__all__ = ["KINDS", "RandomFeatures", "gaussian_projection", "arccos_kernel"]

KINDS = ("relu", "exp", "cos", "sin")


def gaussian_projection(rows: int, cols: int, *, generator: torch.Generator, orthogonal: bool = True
                        ) -> torch.Tensor:
    """A ``rows x cols`` projection whose rows are each marginally N(0, I_cols).

    With ``orthogonal``, rows come in blocks of up to ``cols`` mutually orthogonal directions (QR of a
    Gaussian matrix), each row rescaled to the norm of an independent N(0, I_cols) draw.
    """
    if not orthogonal:
        return torch.randn(rows, cols, generator=generator, dtype=torch.float64)
    blocks = []
    for start in range(0, rows, cols):
        q, r = torch.linalg.qr(torch.randn(cols, cols, generator=generator, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))  # a Haar-distributed rotation (fixes QR's sign ambiguity)
        blocks.append(q.T[: min(cols, rows - start)])
    norms = torch.randn(rows, cols, generator=generator, dtype=torch.float64).norm(dim=1, keepdim=True)
    return torch.cat(blocks) * norms


def arccos_kernel(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Order-1 arc-cosine kernel ``|x||w| (sin t + (pi - t) cos t) / (2 pi)``, ``t`` the angle between
    them: ``E_g[ReLU(g.x) ReLU(g.w)]`` for ``g ~ N(0, I)``. Rows of ``x`` against rows of ``w``."""
    nx, nw = x.norm(dim=-1, keepdim=True), w.norm(dim=-1, keepdim=True)
    cos = ((x @ w.T) / (nx * nw.T).clamp_min(1e-12)).clamp(-1.0, 1.0)
    t = torch.arccos(cos)
    return nx * nw.T * (torch.sin(t) + (math.pi - t) * cos) / (2 * math.pi)


class RandomFeatures(nn.Module):
    """The input feature map ``phi: R^d -> R^m`` of one SNNK layer, and its parameter map :meth:`psi`.

    Args:
        in_features: ``d``.
        m: output width (number of real features).
        kind: one of :data:`KINDS`.
        seed: seeds the projection ``G`` (a buffer: exported as an ONNX initializer, saved with the
            weights, and regenerable from the seed).
        orthogonal: block-orthogonal rows instead of i.i.d. Gaussian ones.

    Example:
        >>> phi = RandomFeatures(8, 64, kind="cos", seed=0)
        >>> w, b, x = torch.randn(3, 8) / 3, torch.zeros(3), torch.randn(5, 8) / 3
        >>> (phi(x).double() @ phi.psi(w, b).T).shape   # ~ cos(x @ w.T + b)
        torch.Size([5, 3])
    """

    def __init__(self, in_features: int, m: int, *, kind: str = "relu", seed: int = 0, orthogonal: bool = True):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"kind={kind!r} is not one of {KINDS}")
        if kind in ("cos", "sin") and m % 2:
            raise ConfigError(f"kind={kind!r} needs an even number of features (cos and sin pairs), got m={m}")
        self.kind, self.in_features, self.m, self.seed, self.orthogonal = kind, in_features, m, seed, orthogonal
        rows = m // 2 if kind in ("cos", "sin") else m
        cols = in_features + (1 if kind == "relu" else 0)  # relu: one extra column for the bias
        g = gaussian_projection(rows, cols, generator=torch.Generator().manual_seed(seed), orthogonal=orthogonal)
        self.register_buffer("proj", g.float())  # (rows, d [+ 1])
        self.register_buffer("scale", torch.ones(()))  # s: inputs are multiplied by it, weights divided

    def extra_repr(self) -> str:
        """The sizes and kind shown in the module's repr."""
        return f"in_features={self.in_features}, m={self.m}, kind={self.kind!r}"

    @property
    def _rows(self) -> int:
        return self.proj.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x)``: ``(..., d) -> (..., m)``."""
        xs = x * self.scale
        if self.kind == "relu":
            g, g_bias = self.proj[:, :-1], self.proj[:, -1]
            return F.relu(F.linear(xs, g, g_bias)) * (self._rows ** -0.5)
        u = F.linear(xs, self.proj)  # (..., rows)
        half_sq = 0.5 * (xs * xs).sum(-1, keepdim=True)  # |s x|^2 / 2, (..., 1)
        if self.kind == "exp":
            return torch.exp(u - half_sq) * (self._rows ** -0.5)
        return torch.exp(half_sq) * torch.cat([torch.cos(u), torch.sin(u)], -1) * (self._rows ** -0.5)

    @torch.no_grad()
    def psi(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``Psi(W, b)``: ``(l, d)`` weights and ``(l,)`` biases -> ``(l, m)``, computed in float64."""
        w = weight.detach().double() / self.scale.double()
        b = w.new_zeros(w.shape[0]) if bias is None else bias.detach().double()
        g = self.proj.double()
        if self.kind == "relu":
            return F.relu(torch.cat([w, b[:, None]], 1) @ g.T) * (self._rows ** -0.5)
        envelope = torch.exp(w @ g.T - 0.5 * (w * w).sum(1, keepdim=True))  # (l, rows)
        if self.kind == "exp":
            return envelope * torch.exp(b)[:, None] * (self._rows ** -0.5)
        shift = b - (math.pi / 2 if self.kind == "sin" else 0.0)
        return torch.cat([envelope * torch.cos(shift)[:, None], -envelope * torch.sin(shift)[:, None]], 1) * (
            self._rows ** -0.5)

    @torch.no_grad()
    def calibrate(self, x_norm: float, w_norm: float) -> None:
        """Set the input scale from typical norms of the inputs and of the weight rows.

        ``relu`` is positively homogeneous, so ``s`` only balances the input against the constant bias
        coordinate: ``s = 1 / |x|``. The other kinds use ``s^2 = |w| / |x|``, which minimises the
        variance bound ``exp(|s x|^2 + |w / s|^2)``.
        """
        x_norm, w_norm = max(float(x_norm), 1e-6), max(float(w_norm), 1e-6)
        s = 1.0 / x_norm if self.kind == "relu" else math.sqrt(w_norm / x_norm)
        self.scale.fill_(s)
