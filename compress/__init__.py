"""slimkit.compress: the torch side. Analysis, training, the compression methods and ``Family``.

Every method takes a trained model and DataLoaders and returns a :class:`Family` of variants.
"""

from slimkit.runtime.errors import (
    BudgetError,
    ConfigError,
    SlimkitError,
    UnsupportedModelError,
    VariantError,
)

from . import data, zoo
from .boost import BoostConfig, boost
from .cost import count_macs, count_params
from .family import Family, Variant
from .graph import analyze
from .n2n import N2NConfig, n2n
from .snnk import SNNKConfig, snnk
from .sortednet import SortedNet, SortedNetConfig, sortednet
from .sparse_rnn import SparseRNNConfig, sparse_rnn
from .train import evaluate, fit

__all__ = [
    "Family", "Variant", "sortednet", "SortedNet", "SortedNetConfig", "n2n", "N2NConfig",
    "boost", "BoostConfig", "snnk", "SNNKConfig",
    "sparse_rnn", "SparseRNNConfig",
    "fit", "evaluate", "count_params", "count_macs", "analyze", "data", "zoo",
    "SlimkitError", "ConfigError", "BudgetError", "VariantError", "UnsupportedModelError",
]
