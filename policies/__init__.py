"""slimkit.policies: the reinforcement-learning side of N2N compression (Ashok et al., arXiv 1709.06030).

Policy networks (layer removal, layer shrinkage), a REINFORCE trainer and gymnasium environments. It
never imports ``slimkit.compress``: environments receive a layer table (numpy) and an evaluator callable;
``slimkit.compress.n2n`` wires the two together. Importing it registers the gymnasium ids
``slimkit/LayerRemoval-v0`` and ``slimkit/LayerShrink-v0``.

Example:
    >>> import gymnasium, slimkit.policies
    >>> env = gymnasium.make("slimkit/LayerRemoval-v0")     # built-in toy teacher and evaluator
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (10, 8)
"""

from .envs import (
    REMOVAL_ID,
    SHRINK_ID,
    LayerRemovalEnv,
    LayerShrinkEnv,
    ToyEvaluator,
    register_envs,
    toy_teacher,
)
from .nets import DEFAULT_RATIOS, RemovalPolicy, Rollout, ShrinkPolicy, load_policy, save_policy
from .reinforce import Reinforce
from .table import (
    INVALID_REWARD,
    LAYER_FEATURES,
    LAYER_TYPES,
    N_FEATURES,
    normalize_table,
    reward,
)

register_envs()

__all__ = [
    "RemovalPolicy", "ShrinkPolicy", "Rollout", "save_policy", "load_policy", "DEFAULT_RATIOS",
    "Reinforce",
    "LayerRemovalEnv", "LayerShrinkEnv", "ToyEvaluator", "toy_teacher", "REMOVAL_ID", "SHRINK_ID",
    "LAYER_FEATURES", "LAYER_TYPES", "N_FEATURES", "INVALID_REWARD", "normalize_table", "reward",
]
