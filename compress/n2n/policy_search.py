"""N2N's policy search: the two-stage REINFORCE loop and its resumable checkpoint (see :mod:`.method`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimkit.policies import N_FEATURES, Reinforce, RemovalPolicy, ShrinkPolicy, load_policy, save_policy
from slimkit.runtime.errors import ConfigError

from ..train import progress_bar
from .config import N2NConfig
from .search import Search, Student

__all__ = ["Checkpoint", "run_search", "make_trainer", "config_json"]


class Checkpoint:
    """Search state on disk (JSON + policy/trainer weights), so a long search resumes where it stopped."""

    def __init__(self, path, cfg: N2NConfig):
        self.path = Path(path) if path is not None else None
        self.cfg = cfg
        self.data = {"stage": "remove", "iteration": 0, "best_remove": [], "cache": {}}
        if self.path is not None and (self.path / "state.json").is_file():
            self.data = json.loads((self.path / "state.json").read_text())
            if self.data.get("config") != config_json(cfg):
                raise ConfigError(f"checkpoint {self.path} was written by a search with other settings; "
                                  "use a new checkpoint directory or the same settings")

    def save(self, trainers: dict[str, Reinforce], search: Search) -> None:
        """Write the trainers, the transferable policies and the scored-student cache, atomically."""
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for name, tr in trainers.items():
            tr.save(self.path / name)
            save_policy(tr.policy, self.path / f"policy-{name}")  # for transfer to another teacher
        self.data["config"] = config_json(self.cfg)
        self.data["cache"] = {k: vars(s) for k, s in search.cache.items()}
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path / "state.json")

    def restore(self, trainers: dict[str, Reinforce], search: Search) -> None:
        """Load what :meth:`save` wrote (trainers and scored-student cache), if anything."""
        if self.path is None:
            return
        for name, tr in trainers.items():
            if (self.path / name).exists():
                tr.load(self.path / name)
        search.cache.update({k: Student(**v) for k, v in self.data.get("cache", {}).items()})


def config_json(cfg: N2NConfig) -> dict:
    """The config as JSON data (what a checkpoint records to refuse resuming with other settings)."""
    return json.loads(json.dumps(vars(cfg)))


def run_search(search: Search, state: Checkpoint, init: Path | None = None) -> None:
    """The two-stage policy search: removal policy for ``iterations`` updates, then the shrink policy on the
    best removal; every scored student lands in ``search.cache``. ``init`` holds policies to start from."""
    cfg = search.cfg
    rng = torch.Generator().manual_seed(cfg.seed)
    # keep probability 0.5 at the start: biased towards keeping, the policy almost never sampled the
    # all-blocks-removed students that tight budgets need (bench/N2N_RESULTS.md)
    start = {"remove": RemovalPolicy(N_FEATURES, init_keep=0.5),
             "shrink": ShrinkPolicy(N_FEATURES, ratios=cfg.ratios)}
    for name in start:
        if init is not None and (init / f"policy-{name}").is_dir():
            start[name] = load_policy(init / f"policy-{name}")
    if init is not None and not any((init / f"policy-{n}").is_dir() for n in start):
        raise ConfigError(f"policies={str(init)!r} holds neither policy-remove/ nor policy-shrink/; pass the "
                          "checkpoint directory of an earlier n2n search")
    trainers = {name: make_trainer(policy, cfg) for name, policy in start.items()}
    state.restore(trainers, search)
    if cfg.budget:
        search.anchor()  # its reward is cached: on resume nothing is trained again (costs are recounted)
    units = search.analysis.units
    stages = (["remove"] if units else []) + ["shrink"]
    total = cfg.iterations * len(stages)
    done = (stages.index(state.data["stage"]) if state.data["stage"] in stages else 0) * cfg.iterations
    bar = progress_bar(range(done + state.data["iteration"], total), enabled=search.progress, desc="n2n",
                       total=total)
    for _ in bar:
        stage = state.data["stage"] if state.data["stage"] in stages else stages[0]
        rollouts, rewards = [], []
        # the tables are fixed within a stage: the teacher's units, or the best removal's groups
        if stage == "remove":
            table, free = search.removal_table(), np.zeros(len(units), bool)
        else:
            remove = state.data["best_remove"]
            groups = search.shrink_rows(remove)
            table, free = (search.shrink_table(groups), np.zeros(len(groups), bool)) if groups else (None, None)
        for _r in range(cfg.rollouts if table is not None else 0):
            ro = trainers[stage].policy.sample(table, free, generator=rng)
            if stage == "remove":
                remove = [u for u, keep in zip(units, ro.actions) if not keep]
                levels = None  # every group at full width
            else:
                levels = [int(i) for i in ro.actions]
            rollouts.append(ro)
            rewards.append(search.score(search.fit_budget(remove, levels)).reward)
        if rollouts:
            trainers[stage].update(rollouts, rewards)
        best = max(search.cache.values(), key=lambda s: s.reward)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(stage=stage, best_reward=f"{best.reward:.3f}", best_acc=f"{best.accuracy:.3f}",
                            best_cost=f"{best.cost.get(cfg.cost, float('nan')):.3f}")
        state.data["iteration"] += 1
        if state.data["iteration"] >= cfg.iterations and stage == "remove":
            # every student so far came from stage 1: keep the removal set of the best one
            state.data.update(stage="shrink", iteration=0, best_remove=best.arch["remove"])
        state.save(trainers, search)


def make_trainer(policy: nn.Module, cfg: N2NConfig) -> Reinforce:
    """The REINFORCE trainer of one stage's policy. A small entropy bonus: plain REINFORCE became confident
    after ~40 updates on the toy envs."""
    return Reinforce(policy, lr=cfg.policy_lr, entropy_coef=0.01)
