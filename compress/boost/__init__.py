"""GBNN (arXiv 1909.12098): a model's head replaced by a hidden layer grown in gradient-boosting stages.

Roles: :mod:`.config` (``BoostConfig``), :mod:`.method` (the ``boost`` entry function and the rebuild of
saved variants), :mod:`.booster` (``Booster``: the stages on a feature matrix, merged into one layer),
:mod:`.head` (finding and checking the replaced head, its input features, the new model).
"""

from .booster import Booster, boosted_head
from .config import ACTIVATIONS, BoostConfig
from .head import head_features
from .method import boost, rebuild

__all__ = ["boost", "BoostConfig", "Booster", "boosted_head", "ACTIVATIONS", "head_features", "rebuild"]
