"""How far do N2N's REINFORCE updates move the removal policy in a benchmark-sized search?

A synthetic signal with the benchmark's reward scale: 4 removable units, 5 rollouts per update; removing
unit 0 adds 0.1 to the reward, removing unit 3 subtracts 0.1, plus Gaussian noise (sd 0.05). Prints the
keep probability of each unit (400 samples) after 8 and 24 updates at several policy learning rates, over
5 seeds (n2n's default is 0.01; it was 0.003). A policy that learned the signal keeps unit 0 rarely and unit 3 often; one that did not stays
at 0.5 everywhere, i.e. samples exactly like random search.

    .venv/bin/python bench/_n2n_policy_move.py
"""

from __future__ import annotations

import numpy as np
import torch

from slimkit.compress.n2n import N2NConfig, make_trainer
from slimkit.policies import N_FEATURES, RemovalPolicy

torch.set_num_threads(1)


def keep_probs(lr: float, updates: int, seed: int) -> np.ndarray:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = RemovalPolicy(N_FEATURES, init_keep=0.5)
    trainer = make_trainer(policy, N2NConfig(policy_lr=lr))  # as n2n() builds it
    table = rng.random((4, N_FEATURES)).astype(np.float32)
    forced = np.zeros(4, bool)
    for _ in range(updates):
        rollouts = [policy.sample(table, forced, generator=gen) for _ in range(5)]
        rewards = [0.6 + 0.1 * (1 - int(r.actions[0])) - 0.1 * (1 - int(r.actions[3])) + rng.normal(0, 0.05)
                   for r in rollouts]
        trainer.update(rollouts, rewards)
    return np.array([policy.sample(table, forced, generator=gen).actions for _ in range(400)], float).mean(0)


if __name__ == "__main__":
    print("| policy lr | updates | p(keep unit 0), want low | p(keep unit 3), want high |")
    print("| --- | --- | --- | --- |")
    for lr in (0.003, 0.01, 0.03):
        for updates in (8, 24):
            p = np.array([keep_probs(lr, updates, s) for s in range(5)])
            print(f"| {lr} | {updates} | {p[:, 0].mean():.2f} ({p[:, 0].min():.2f}-{p[:, 0].max():.2f}) | "
                  f"{p[:, 3].mean():.2f} ({p[:, 3].min():.2f}-{p[:, 3].max():.2f}) |")
