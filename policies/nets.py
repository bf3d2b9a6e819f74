"""N2N policy networks: the layer-removal BiLSTM and the autoregressive layer-shrinkage LSTM.

Both read the *normalised* layer table (:func:`slimkit.policies.table.normalize_table`), one row per
layer, and are recurrent over rows, so a policy trained on a 6-row teacher runs unchanged on a 12-row
one (N2N's transfer). One call to ``sample`` is one rollout: a whole architecture decision.

Example:
    >>> import numpy as np
    >>> from slimkit.policies import RemovalPolicy, normalize_table
    >>> from slimkit.policies.envs import toy_teacher
    >>> raw, forced, _ = toy_teacher()
    >>> roll = RemovalPolicy().sample(normalize_table(raw), forced)
    >>> roll.actions.dtype, roll.log_prob.requires_grad
    (dtype('int8'), True)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimkit.runtime.errors import ConfigError

from .table import N_FEATURES, check_table

__all__ = ["Rollout", "RemovalPolicy", "ShrinkPolicy", "save_policy", "load_policy", "DEFAULT_RATIOS"]

DEFAULT_RATIOS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_FORMAT = "slimkit-policy"
_VERSION = 1


@dataclass
class Rollout:
    """One sampled architecture decision.

    Attributes:
        actions: int8 keep mask (removal) or int64 ratio indices (shrink), one per table row.
        log_prob: scalar tensor with grad: log-probability of the free (not forced) actions.
        entropy: scalar tensor: entropy of the free actions' distributions (summed over rows).
    """

    actions: np.ndarray
    log_prob: torch.Tensor
    entropy: torch.Tensor


def _as_input(table: np.ndarray, n_features: int) -> torch.Tensor:
    arr = check_table(table, name="normalised table") if n_features == N_FEATURES else np.asarray(table)
    if arr.ndim != 2 or arr.shape[1] != n_features or arr.shape[0] == 0:
        raise ConfigError(f"table must have shape (layers >= 1, {n_features}); got {arr.shape}")
    if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
        raise ConfigError(f"table values must lie in [0, 1] (got [{arr.min():.3g}, {arr.max():.3g}]): pass "
                          "normalize_table(raw), not the raw table")
    return torch.as_tensor(arr, dtype=torch.float32)


def _as_mask(mask: np.ndarray | None, n: int, name: str) -> torch.Tensor:
    if mask is None:
        return torch.zeros(n, dtype=torch.bool)
    arr = np.asarray(mask)
    if arr.shape != (n,):
        raise ConfigError(f"{name} must be a boolean array of shape ({n},), one per table row; "
                          f"got {arr.shape}")
    return torch.as_tensor(arr.astype(bool))


class RemovalPolicy(nn.Module):
    """N2N stage-1 layer-removal policy (Ashok et al., arXiv 1709.06030).

    A bidirectional LSTM (2 layers, hidden 30 by default) reads every row of the normalised table, so each
    keep/remove decision sees the layers before and after it; a linear head gives one Bernoulli keep
    logit per row. The head starts near zero with bias logit(0.8), so a fresh policy keeps ~80% of the
    free layers: early students stay close to the teacher and score well above the invalid region.

    Args:
        n_features: columns of the table (default :data:`~slimkit.policies.table.N_FEATURES`).
        hidden: LSTM hidden size per direction.
        num_layers: stacked LSTM layers.
    """

    def __init__(self, n_features: int = N_FEATURES, hidden: int = 30, num_layers: int = 2,
                 init_keep: float = 0.8) -> None:
        super().__init__()
        if n_features < 1 or hidden < 1 or num_layers < 1:
            raise ConfigError(f"n_features, hidden and num_layers must be >= 1; got {n_features}, {hidden}, "
                              f"{num_layers}")
        if not 0 < init_keep < 1:
            raise ConfigError(f"init_keep must be a probability in (0, 1); got {init_keep}")
        self.kwargs = {"n_features": n_features, "hidden": hidden, "num_layers": num_layers,
                       "init_keep": init_keep}
        self.n_features = n_features
        self.lstm = nn.LSTM(n_features, hidden, num_layers=num_layers, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, 1)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.fill_(math.log(init_keep / (1 - init_keep)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Keep logits: (B, L, F) -> (B, L)."""
        h, _ = self.lstm(x)  # (B, L, 2 * hidden)
        return self.head(h).squeeze(-1)

    def sample(self, table: np.ndarray, forced_keep: np.ndarray | None = None, *, greedy: bool = False,
               generator: torch.Generator | None = None) -> Rollout:
        """Sample (or, with ``greedy``, take the most likely) keep mask for one teacher.

        Args:
            table: normalised table (L, n_features).
            forced_keep: bool (L,): rows that must be kept; always 1, no log-prob or entropy.
            greedy: keep a row iff p(keep) > 0.5 (deterministic).
            generator: torch RNG for reproducible sampling.

        Returns:
            A :class:`Rollout` with int8 actions (1 = keep).
        """
        x = _as_input(table, self.n_features)
        forced = _as_mask(forced_keep, x.shape[0], "forced_keep")
        logits = self(x.unsqueeze(0))[0]  # (L,)
        dist = torch.distributions.Bernoulli(logits=logits)
        with torch.no_grad():
            if greedy:
                act = (logits > 0).float()
            else:
                act = torch.bernoulli(dist.probs.detach(), generator=generator)
            act = torch.where(forced, torch.ones_like(act), act)
        free = (~forced).float()
        log_prob = (dist.log_prob(act) * free).sum()
        entropy = (dist.entropy() * free).sum()
        return Rollout(act.numpy().astype(np.int8), log_prob, entropy)


class ShrinkPolicy(nn.Module):
    """N2N stage-2 layer-shrinkage policy (Ashok et al., arXiv 1709.06030).

    An autoregressive LSTM cell walks the rows in order; step ``i`` reads row ``i`` and a one-hot of the
    choice made at row ``i - 1`` and outputs a categorical distribution over ``ratios`` (the fraction of
    the layer's width to keep). The head's bias starts at ``3 * (ratio - 1)``, so a fresh policy favours
    mild shrinkage (mean ratio ~0.8 for the default menu) instead of a uniform draw.

    Args:
        n_features: columns of the table.
        ratios: width ratios to choose from, each in (0, 1], distinct, including 1.0.
        hidden: LSTM hidden size.
    """

    def __init__(self, n_features: int = N_FEATURES, ratios: tuple[float, ...] = DEFAULT_RATIOS,
                 hidden: int = 30) -> None:
        super().__init__()
        self.ratios = check_ratios(ratios)
        if n_features < 1 or hidden < 1:
            raise ConfigError(f"n_features and hidden must be >= 1; got {n_features}, {hidden}")
        self.kwargs = {"n_features": n_features, "ratios": list(self.ratios), "hidden": hidden}
        self.n_features = n_features
        self.keep_index = self.ratios.index(1.0)
        n = len(self.ratios)
        self.cell = nn.LSTMCell(n_features + n, hidden)
        self.head = nn.Linear(hidden, n)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(3.0 * (torch.tensor(self.ratios) - 1.0))

    def sample(self, table: np.ndarray, fixed: np.ndarray | None = None, *, greedy: bool = False,
               generator: torch.Generator | None = None) -> Rollout:
        """Sample (or take the most likely) ratio index for every row, first to last.

        Args:
            table: normalised table (L, n_features).
            fixed: bool (L,): rows that keep their full width (ratio 1.0); no log-prob or entropy.
            greedy: take the arg-max ratio at every step (deterministic).
            generator: torch RNG for reproducible sampling.

        Returns:
            A :class:`Rollout` with int64 indices into ``self.ratios``.
        """
        x = _as_input(table, self.n_features)
        fixed_t = _as_mask(fixed, x.shape[0], "fixed")
        n = len(self.ratios)
        h = x.new_zeros(1, self.cell.hidden_size)
        c = x.new_zeros(1, self.cell.hidden_size)
        prev = x.new_zeros(1, n)
        actions: list[int] = []
        log_probs: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []
        for i in range(x.shape[0]):
            h, c = self.cell(torch.cat([x[i : i + 1], prev], dim=1), (h, c))  # (1, hidden)
            logits = self.head(h)[0]  # (n,)
            if bool(fixed_t[i]):
                a = self.keep_index
            else:
                dist = torch.distributions.Categorical(logits=logits)
                if greedy:
                    a = int(logits.argmax())
                else:
                    a = int(torch.multinomial(dist.probs.detach(), 1, generator=generator))
                log_probs.append(dist.log_prob(torch.tensor(a)))
                entropies.append(dist.entropy())
            actions.append(a)
            prev = torch.nn.functional.one_hot(torch.tensor([a]), n).float()
        zero = self.head.bias.sum() * 0.0  # keeps a graph when every row is fixed
        log_prob = torch.stack(log_probs).sum() if log_probs else zero
        entropy = torch.stack(entropies).sum() if entropies else zero.detach()
        return Rollout(np.asarray(actions, dtype=np.int64), log_prob, entropy)


def check_ratios(ratios: Any) -> tuple[float, ...]:
    """Validate a shrink-ratio menu: distinct values in (0, 1] including 1.0 (the "unchanged" choice)."""
    try:
        vals = tuple(float(r) for r in ratios)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"ratios must be a sequence of numbers in (0, 1]; got {ratios!r}") from e
    if not vals:
        raise ConfigError("ratios is empty; pass e.g. (0.25, 0.5, 0.75, 1.0)")
    if any(not (0 < r <= 1) for r in vals) or len(set(vals)) != len(vals):
        raise ConfigError(f"ratios must be distinct values in (0, 1]; got {vals}")
    if 1.0 not in vals:
        raise ConfigError(f"ratios must include 1.0 (keep the layer's full width, used for fixed rows); "
                          f"got {vals}")
    return vals


_CLASSES = {"RemovalPolicy": RemovalPolicy, "ShrinkPolicy": ShrinkPolicy}


def save_policy(policy: nn.Module, path: str | Path) -> Path:
    """Save a policy as a directory: ``config.json`` (class, constructor kwargs, version) and
    ``weights.safetensors``. No pickles.

    Example:
        >>> save_policy(RemovalPolicy(), "out/removal")      # doctest: +SKIP
        >>> policy = load_policy("out/removal")               # doctest: +SKIP
    """
    from safetensors.torch import save_file

    name = type(policy).__name__
    if name not in _CLASSES or not hasattr(policy, "kwargs"):
        raise ConfigError(f"save_policy saves {sorted(_CLASSES)}; got {name}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    config = {"format": _FORMAT, "version": _VERSION, "class": name, "kwargs": policy.kwargs}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.detach().contiguous() for k, v in policy.state_dict().items()},
              str(out / "weights.safetensors"))
    return out


def load_policy(path: str | Path) -> nn.Module:
    """Rebuild a policy saved by :func:`save_policy`.

    Raises:
        ConfigError: the directory, ``config.json`` or ``weights.safetensors`` is missing or does not
            describe a slimkit policy of a known version, or the weights do not fit the config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(path)
    cfg_path, w_path = root / "config.json", root / "weights.safetensors"
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; save_policy(policy, path) writes a directory")
    found = sorted(p.name for p in root.iterdir())
    if not cfg_path.is_file() or not w_path.is_file():
        raise ConfigError(f"{root} must hold config.json and weights.safetensors (from save_policy); "
                          f"found {found}")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise ConfigError(f"{cfg_path} is not a slimkit policy config (format {_FORMAT!r}); found {config!r}")
    if config.get("version") != _VERSION:
        raise ConfigError(f"{cfg_path} has version {config.get('version')!r}; this slimkit reads {_VERSION}")
    cls = _CLASSES.get(config.get("class"))
    if cls is None:
        raise ConfigError(f"{cfg_path} names class {config.get('class')!r}; "
                          f"expected one of {sorted(_CLASSES)}")
    kwargs = dict(config.get("kwargs", {}))
    if "ratios" in kwargs:
        kwargs["ratios"] = tuple(kwargs["ratios"])
    try:
        policy = cls(**kwargs)
        policy.load_state_dict(load_file(str(w_path)))
    except (TypeError, RuntimeError, SafetensorError) as e:
        raise ConfigError(f"{root}: weights do not fit {cls.__name__}({kwargs}): {e}") from e
    return policy
