"""slimkit.policies: the reinforcement-learning side of N2N compression (policy nets, gymnasium envs,
REINFORCE). It never imports ``slimkit.compress``: environments receive a layer table and an evaluator.

Nothing here yet: the N2N issue adds it.
"""

__all__: list[str] = []
