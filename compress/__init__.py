"""slimkit.compress: the torch side. Analysis, training, the compression methods and ``Family``.

Every method takes a trained model and DataLoaders and returns a :class:`Family` of variants. Each
method is a package with the same roles (``config.py``: its :class:`MethodConfig`; ``method.py``: the
entry function and the rebuild of saved variants; its parts in their own modules): ``sortednet/``,
``n2n/``, ``snnk/``, ``sparse_rnn/``, ``boost/``. The machinery they share sits at this package's root:
:mod:`.preamble` (the checks every entry function runs first), :mod:`.config` (the config base),
:mod:`.family`, :mod:`.graph`, :mod:`.cost`, :mod:`.train`, :mod:`.data`, :mod:`.zoo`.

``METHODS`` maps each method's name to its entry function and config class.
"""

from slimkit.runtime.errors import (
    BudgetError,
    ConfigError,
    SlimkitError,
    UnsupportedModelError,
    VariantError,
)

from . import _compat, data, zoo
from .boost import BoostConfig, boost
from .config import MethodConfig
from .cost import count_macs, count_params
from .family import Family, Variant
from .graph import analyze
from .n2n import N2NConfig, n2n
from .snnk import SNNKConfig, snnk
from .sortednet import SortedNet, SortedNetConfig, sortednet
from .sparse_rnn import SparseRNNConfig, sparse_rnn
from .train import evaluate, fit

_compat.install()

METHODS = {
    "sortednet": (sortednet, SortedNetConfig),
    "n2n": (n2n, N2NConfig),
    "snnk": (snnk, SNNKConfig),
    "sparse_rnn": (sparse_rnn, SparseRNNConfig),
    "boost": (boost, BoostConfig),
}

__all__ = [
    "Family", "Variant", "sortednet", "SortedNet", "SortedNetConfig", "n2n", "N2NConfig",
    "boost", "BoostConfig", "snnk", "SNNKConfig",
    "sparse_rnn", "SparseRNNConfig", "MethodConfig", "METHODS",
    "fit", "evaluate", "count_params", "count_macs", "analyze", "data", "zoo",
    "SlimkitError", "ConfigError", "BudgetError", "VariantError", "UnsupportedModelError",
]
