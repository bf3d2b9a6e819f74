"""REINFORCE for the N2N policies: moving-average baseline, per-rollout advantage, optional entropy bonus.

N2N (Ashok et al., arXiv 1709.06030) trains both policies with REINFORCE and a baseline. Unlike the
official code, which gives every rollout of an iteration the batch-mean advantage, each rollout here gets
its own advantage ``r_i - b``, so the update credits the architectures that actually scored well.

Example:
    >>> import gymnasium, torch
    >>> from slimkit.policies import RemovalPolicy, Reinforce, normalize_table
    >>> env = gymnasium.make("slimkit/LayerRemoval-v0").unwrapped
    >>> policy = RemovalPolicy(); trainer = Reinforce(policy)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rolls = [policy.sample(env.table, env.forced_keep, generator=gen) for _ in range(5)]
    >>> stats = trainer.update(rolls, [env.step(r.actions)[1] for r in rolls])
    >>> sorted(stats)
    ['baseline', 'entropy', 'loss', 'reward']
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.runtime.errors import ConfigError

from .nets import Rollout

__all__ = ["Reinforce"]

_FORMAT = "slimkit-reinforce"
_VERSION = 1


# Adam moves each weight by about lr per update, so with N2N's few updates the rate decides whether the
# policy learns at all: 1e-2 learns a clear signal in ~24 updates, 3e-3 left p(keep) at 0.50 after 8
# (the search then samples like random search; bench/_n2n_policy_move.py)
DEFAULT_LR = 1e-2


class Reinforce:
    """REINFORCE trainer with an exponential moving-average baseline (N2N, arXiv 1709.06030).

    Loss of one update: ``-mean_i((r_i - b) * log_prob_i) - entropy_coef * mean_i(entropy_i)``, one Adam
    step. The baseline ``b`` starts at the first batch's mean reward, then after every update
    ``b <- decay * b + (1 - decay) * mean(rewards)``.

    Args:
        policy: a :class:`~slimkit.policies.RemovalPolicy` or :class:`~slimkit.policies.ShrinkPolicy`
            (any module whose rollouts carry ``log_prob``/``entropy``).
        lr: Adam learning rate (default :data:`DEFAULT_LR`).
        baseline_decay: weight of the old baseline, in [0, 1).
        entropy_coef: weight of the entropy bonus (>= 0); keeps exploration alive on long searches.
    """

    def __init__(self, policy: nn.Module, *, lr: float = DEFAULT_LR, baseline_decay: float = 0.8,
                 entropy_coef: float = 0.0) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"lr must be a positive number; got {lr}")
        if not 0 <= baseline_decay < 1:
            raise ConfigError(f"baseline_decay must be in [0, 1); got {baseline_decay}")
        if not (entropy_coef >= 0 and math.isfinite(entropy_coef)):
            raise ConfigError(f"entropy_coef must be >= 0; got {entropy_coef}")
        self.policy = policy
        self.lr, self.baseline_decay, self.entropy_coef = lr, baseline_decay, entropy_coef
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
        self.baseline: float | None = None
        self.steps = 0

    def update(self, rollouts: list[Rollout], rewards: list[float]) -> dict[str, float]:
        """One policy-gradient step on a batch of rollouts and their rewards.

        Returns:
            ``{"loss", "reward" (batch mean), "baseline" (the one used for the advantages),
            "entropy" (batch mean)}``.

        Raises:
            ConfigError: empty batch, mismatched lengths or a non-finite reward.
        """
        if not rollouts or len(rollouts) != len(rewards):
            raise ConfigError(f"update needs one reward per rollout and at least one rollout; got "
                              f"{len(rollouts)} rollouts and {len(rewards)} rewards")
        rs = [float(r) for r in rewards]
        if not all(math.isfinite(r) for r in rs):
            raise ConfigError(f"rewards must be finite; got {rs}")
        mean_r = sum(rs) / len(rs)
        if self.baseline is None:
            self.baseline = mean_r
        b = self.baseline
        log_probs = torch.stack([r.log_prob for r in rollouts])
        entropy = torch.stack([r.entropy for r in rollouts]).mean()
        adv = torch.tensor(rs, dtype=log_probs.dtype) - b
        loss = -(adv * log_probs).mean() - self.entropy_coef * entropy
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * b + (1 - self.baseline_decay) * mean_r
        self.steps += 1
        return {"loss": float(loss.detach()), "reward": mean_r, "baseline": b,
                "entropy": float(entropy.detach())}

    # -- resumable state: tensors + JSON-able values, never pickles ---------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Policy weights, Adam state, baseline and step count (tensors and JSON-able values only)."""
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "steps": self.steps,
                "hparams": {"lr": self.lr, "baseline_decay": self.baseline_decay,
                            "entropy_coef": self.entropy_coef}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output into this trainer (same policy class and size).

        The checkpoint's Adam settings (``lr``) replace the constructor's; ``baseline_decay`` and
        ``entropy_coef`` stay as constructed.
        """
        try:
            self.policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise ConfigError(f"trainer state does not fit this policy/optimiser: {e}") from e
        self.baseline = None if state.get("baseline") is None else float(state["baseline"])
        self.steps = int(state.get("steps", 0))

    def save(self, path: str | Path) -> Path:
        """Write the state as a directory: ``trainer.json`` + ``trainer.safetensors``."""
        from safetensors.torch import save_file

        state = self.state_dict()
        tensors = {f"policy.{k}": v.detach().contiguous() for k, v in state["policy"].items()}
        opt_state: dict[str, dict[str, Any]] = {}
        for pid, entry in state["optimizer"]["state"].items():
            opt_state[str(pid)] = {}
            for name, value in entry.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{pid}.{name}"] = value.detach().contiguous()
                    opt_state[str(pid)][name] = "tensor"
                else:
                    opt_state[str(pid)][name] = value
        meta = {"format": _FORMAT, "version": _VERSION, "policy_class": type(self.policy).__name__,
                "policy_kwargs": getattr(self.policy, "kwargs", None), "baseline": state["baseline"],
                "steps": state["steps"], "hparams": state["hparams"],
                "optimizer": {"state": opt_state, "param_groups": state["optimizer"]["param_groups"]}}
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / "trainer.json").write_text(json.dumps(meta, indent=2))
        save_file(tensors, str(out / "trainer.safetensors"))
        return out

    def load(self, path: str | Path) -> None:
        """Restore a directory written by :meth:`save` into this trainer (resume a search)."""
        from safetensors.torch import load_file

        root = Path(path)
        meta_path, t_path = root / "trainer.json", root / "trainer.safetensors"
        if not meta_path.is_file() or not t_path.is_file():
            found = sorted(p.name for p in root.iterdir()) if root.is_dir() else "no directory"
            raise ConfigError(f"{root} must hold trainer.json and trainer.safetensors (from "
                              f"Reinforce.save); found {found}")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
            raise ConfigError(f"{meta_path} is not a slimkit REINFORCE state of version {_VERSION}; found "
                              f"format={meta.get('format')!r} version={meta.get('version')!r}")
        if meta.get("policy_class") != type(self.policy).__name__:
            raise ConfigError(f"{root} holds a {meta.get('policy_class')} trainer; this one trains a "
                              f"{type(self.policy).__name__}")
        tensors = load_file(str(t_path))
        policy = {k[len("policy."):]: v for k, v in tensors.items() if k.startswith("policy.")}
        opt_state = {int(pid): {name: tensors[f"optim.{pid}.{name}"] if v == "tensor" else v
                                for name, v in entry.items()}
                     for pid, entry in meta["optimizer"]["state"].items()}
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
                  for g in meta["optimizer"]["param_groups"]]
        self.load_state_dict({"policy": policy, "optimizer": {"state": opt_state, "param_groups": groups},
                              "baseline": meta["baseline"], "steps": meta["steps"]})
