"""slimkit.policies: N2N policy nets, REINFORCE and the gymnasium envs (fast, CPU, toy teacher)."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import slimkit.policies as P
from slimkit.runtime.errors import ConfigError


def _toy(blocks: int = 5):
    raw, forced, importance = P.toy_teacher(blocks)
    return P.normalize_table(raw), forced, P.ToyEvaluator(raw, importance)


# -- table and reward -----------------------------------------------------------------------------------


def test_normalize_table_columns_in_unit_range():
    raw, _, _ = P.toy_teacher()
    t = P.normalize_table(raw)
    assert t.dtype == np.float32 and t.shape == (len(raw), P.N_FEATURES)
    assert t.min() >= 0 and t.max() <= 1
    assert np.allclose(t[:, 0], raw[:, 0] / (len(P.LAYER_TYPES) - 1))  # type id is table-independent
    const = np.tile(raw[:1], (3, 1))
    assert (P.normalize_table(const)[:, 1:] == 0).all()  # constant columns -> 0


def test_reward_formula():
    assert P.reward(1.0, 0.9, 0.9) == 0.0
    assert P.reward(0.5, 0.9, 0.9) == pytest.approx(0.75)  # C = 0.5: 0.5 * 1.5
    assert P.reward(0.1, 0.45, 0.9) == pytest.approx(0.9 * 1.1 * 0.5)
    assert P.reward(1.5, 0.9, 0.9) == P.INVALID_REWARD
    with pytest.raises(ConfigError, match="acc_teacher"):
        P.reward(0.5, 0.9, 0.0)


@pytest.mark.parametrize(("table", "match"), [
    (np.zeros((4, P.N_FEATURES - 1)), r"shape \(layers, 8\).*got shape \(4, 7\)"),
    (np.zeros((0, P.N_FEATURES)), "empty"),
    (np.full((2, P.N_FEATURES), np.nan), "NaN"),
])
def test_bad_tables_raise_config_error(table, match):
    with pytest.raises(ConfigError, match=match):
        P.normalize_table(table)
    with pytest.raises(ConfigError):
        P.RemovalPolicy().sample(table, None)
    with pytest.raises(ConfigError):
        P.LayerRemovalEnv(table, evaluator=lambda a: 0.0)


def test_bad_ratios_and_raw_table_raise_config_error():
    with pytest.raises(ConfigError, match="must include 1.0"):
        P.ShrinkPolicy(ratios=(0.25, 0.5, 0.75))
    with pytest.raises(ConfigError, match="must include 1.0"):
        P.LayerShrinkEnv(ratios=(0.5, 0.9))
    with pytest.raises(ConfigError, match="distinct"):
        P.ShrinkPolicy(ratios=(0.5, 0.5, 1.0))
    raw, forced, _ = P.toy_teacher()
    with pytest.raises(ConfigError, match="normalize_table"):
        P.RemovalPolicy().sample(raw, forced)  # the raw table, not the normalised one
    with pytest.raises(ConfigError, match="forced_keep"):
        P.RemovalPolicy().sample(P.normalize_table(raw), forced[:-1])
    with pytest.raises(ConfigError, match="evaluator"):
        P.LayerRemovalEnv(raw)


# -- environments --------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", [P.REMOVAL_ID, P.SHRINK_ID, f"slimkit.policies:{P.REMOVAL_ID}"])
def test_toy_envs_pass_check_env(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gymnasium.make(env_id)
        check_env(env.unwrapped)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        _, r, terminated, truncated, info = env.step(env.action_space.sample())
        assert terminated and not truncated and np.isfinite(r) and "cost_ratio" in info


def test_custom_table_and_evaluator_envs():
    raw, forced, _ = P.toy_teacher(3)
    seen = []

    def removal_eval(keep):
        seen.append(keep.copy())
        return float(keep.mean()), {"kept": int(keep.sum())}

    env = gymnasium.make(P.REMOVAL_ID, table=raw, forced_keep=forced, evaluator=removal_eval)
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(len(raw), dtype=np.int8))
    assert (info["action"][forced] == 1).all() and (info["action"][~forced] == 0).all()
    assert info["kept"] == forced.sum() and r == pytest.approx(forced.mean())
    assert (seen[-1] == info["action"]).all()

    ratios = (0.5, 1.0)
    fixed = np.zeros(len(raw), dtype=bool)
    fixed[-1] = True
    env = P.LayerShrinkEnv(raw, fixed, evaluator=lambda v: float(v.mean()), ratios=ratios)
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(len(raw), dtype=np.int64))
    assert info["ratios"][-1] == 1.0 and (info["ratios"][:-1] == 0.5).all()
    with pytest.raises(ConfigError, match="action"):
        env.step(np.zeros(len(raw) + 1, dtype=np.int64))


# -- policies -------------------------------------------------------------------------------------------


def test_forced_keeps_always_respected():
    table, forced, _ = _toy()
    policy = P.RemovalPolicy(init_keep=0.2)  # mostly "remove", so forced rows are really tested
    gen = torch.Generator().manual_seed(0)
    acts = np.stack([policy.sample(table, forced, generator=gen).actions for _ in range(200)])
    assert acts.dtype == np.int8
    assert (acts[:, forced] == 1).all()
    assert 0.05 < acts[:, ~forced].mean() < 0.5  # the free rows really vary


def test_fresh_removal_policy_keeps_most_layers():
    table, forced, _ = _toy()
    gen = torch.Generator().manual_seed(1)
    acts = np.stack([P.RemovalPolicy().sample(table, forced, generator=gen).actions for _ in range(100)])
    assert 0.7 < acts[:, ~forced].mean() < 0.9


def test_shrink_fixed_rows_pick_full_width():
    table, _, _ = _toy()
    fixed = np.zeros(len(table), dtype=bool)
    fixed[[0, 3, len(table) - 1]] = True
    policy = P.ShrinkPolicy()
    gen = torch.Generator().manual_seed(0)
    acts = np.stack([policy.sample(table, fixed, generator=gen).actions for _ in range(100)])
    assert acts.dtype == np.int64
    assert (np.asarray(policy.ratios)[acts[:, fixed]] == 1.0).all()
    free = np.asarray(policy.ratios)[acts[:, ~fixed]]
    assert 0.7 < free.mean() < 0.95 and len(np.unique(free)) > 3  # mild shrinkage, not uniform
    every = policy.sample(table, np.ones(len(table), dtype=bool))
    assert (every.actions == policy.keep_index).all() and float(every.log_prob.detach()) == 0.0


@pytest.mark.parametrize("cls", [P.RemovalPolicy, P.ShrinkPolicy])
def test_log_prob_gradient_flows(cls):
    table, forced, _ = _toy()
    policy = cls()
    roll = policy.sample(table, forced, generator=torch.Generator().manual_seed(0))
    assert roll.log_prob.dim() == 0 and roll.entropy.dim() == 0 and roll.log_prob.requires_grad
    roll.log_prob.backward()
    grads = [p.grad for p in policy.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("cls", [P.RemovalPolicy, P.ShrinkPolicy])
def test_greedy_is_deterministic_and_save_load_round_trips(cls, tmp_path):
    table, forced, _ = _toy()
    torch.manual_seed(3)
    policy = cls()
    with torch.no_grad():  # move off the init so the comparison means something
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    a = policy.sample(table, forced, greedy=True).actions
    assert (policy.sample(table, forced, greedy=True).actions == a).all()
    P.save_policy(policy, tmp_path / "pol")
    assert sorted(f.name for f in (tmp_path / "pol").iterdir()) == ["config.json", "weights.safetensors"]
    loaded = P.load_policy(tmp_path / "pol")
    assert type(loaded) is cls
    assert (loaded.sample(table, forced, greedy=True).actions == a).all()


def test_policies_never_import_compress():
    import subprocess
    import sys

    code = ("import sys, slimkit.policies; "
            "print(any(m.startswith(('slimkit.compress', 'slimkit.export')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_load_policy_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        P.load_policy(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"found \['config.json'\]"):
        P.load_policy(tmp_path / "half")


@pytest.mark.parametrize("cls", [P.RemovalPolicy, P.ShrinkPolicy])
def test_policy_transfers_to_a_deeper_teacher(cls):
    small, small_forced, _ = _toy(blocks=1)
    big, big_forced, _ = _toy(blocks=9)
    policy = cls()
    assert len(policy.sample(small, small_forced).actions) == len(small)
    roll = policy.sample(big, big_forced, greedy=True)
    assert len(roll.actions) == len(big) and len(big) > 2 * len(small) - 2


# -- REINFORCE ------------------------------------------------------------------------------------------


def _train(stage: str, seed: int, iterations: int, lr: float):
    env = gymnasium.make(P.REMOVAL_ID if stage == "removal" else P.SHRINK_ID).unwrapped
    mask = env.forced_keep if stage == "removal" else env.fixed
    torch.manual_seed(seed)
    policy = P.RemovalPolicy() if stage == "removal" else P.ShrinkPolicy()
    gen = torch.Generator().manual_seed(seed)

    def sampled_mean(n: int = 50) -> float:
        with torch.no_grad():
            return float(np.mean([env.step(policy.sample(env.table, mask, generator=gen).actions)[1]
                                  for _ in range(n)]))

    before = sampled_mean()
    trainer = P.Reinforce(policy, lr=lr)
    for _ in range(iterations):
        rolls = [policy.sample(env.table, mask, generator=gen) for _ in range(5)]
        trainer.update(rolls, [env.step(r.actions)[1] for r in rolls])
    greedy = env.step(policy.sample(env.table, mask, greedy=True).actions)[1]
    return before, greedy, sampled_mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinforce_learns_toy_removal(seed):
    # fresh policy: ~0.09-0.19 mean reward (keeps almost everything); brute-force optimum 0.675;
    # 300 rollouts reach 0.48-0.62 greedy. A no-op update leaves the greedy reward at 0.0.
    before, greedy, after = _train("removal", seed, iterations=60, lr=1e-2)
    assert greedy > before + 0.2, (before, greedy)
    assert after > before + 0.2, (before, after)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinforce_learns_toy_shrink(seed):
    # fresh policy: ~0.32-0.35 mean reward, greedy 0.0 (all 1.0); 500 rollouts reach 0.46-0.53 greedy
    before, greedy, after = _train("shrink", seed, iterations=100, lr=1e-2)
    assert greedy > before + 0.07, (before, greedy)
    assert after > before + 0.06, (before, after)


def test_reinforce_baseline_and_entropy():
    table, forced, ev = _toy()
    policy = P.RemovalPolicy()
    trainer = P.Reinforce(policy, baseline_decay=0.5, entropy_coef=0.1)
    gen = torch.Generator().manual_seed(0)
    rolls = [policy.sample(table, forced, generator=gen) for _ in range(4)]
    stats = trainer.update(rolls, [0.1, 0.2, 0.3, 0.4])
    assert stats["baseline"] == pytest.approx(0.25) and trainer.baseline == pytest.approx(0.25)
    rolls = [policy.sample(table, forced, generator=gen) for _ in range(2)]
    stats = trainer.update(rolls, [1.0, 1.0])
    assert stats["baseline"] == pytest.approx(0.25) and trainer.baseline == pytest.approx(0.625)
    assert stats["entropy"] > 0
    with pytest.raises(ConfigError, match="one reward per rollout"):
        trainer.update(rolls, [1.0])
    with pytest.raises(ConfigError, match="baseline_decay"):
        P.Reinforce(policy, baseline_decay=1.0)


@pytest.mark.parametrize("cls", [P.RemovalPolicy, P.ShrinkPolicy])
def test_reinforce_state_round_trips(cls, tmp_path):
    table, forced, ev = _toy()
    score = ev.removal if cls is P.RemovalPolicy else (lambda a: ev.shrink(np.asarray(policy.ratios)[a]))

    def step(trainer, seed):
        gen = torch.Generator().manual_seed(seed)
        rolls = [trainer.policy.sample(table, forced, generator=gen) for _ in range(5)]
        return trainer.update(rolls, [score(r.actions)[0] for r in rolls])

    torch.manual_seed(0)
    policy = cls()
    trainer = P.Reinforce(policy, lr=1e-2)
    for s in range(3):
        step(trainer, s)
    trainer.save(tmp_path / "ckpt")
    saved_baseline = trainer.baseline
    expected = step(trainer, 99)
    w_expected = {k: v.clone() for k, v in policy.state_dict().items()}

    torch.manual_seed(1)  # a different init: everything must come from the checkpoint
    resumed = P.Reinforce(cls(), lr=1e-2)
    resumed.load(tmp_path / "ckpt")
    assert resumed.steps == 3 and resumed.baseline == saved_baseline
    got = step(resumed, 99)
    assert got == pytest.approx(expected, abs=1e-6)
    for k, v in resumed.policy.state_dict().items():
        torch.testing.assert_close(v, w_expected[k])
    with pytest.raises(ConfigError, match="trainer.json"):
        resumed.load(tmp_path)
