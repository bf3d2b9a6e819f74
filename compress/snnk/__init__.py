"""SNNK (arXiv 2310.13225): MLP blocks replaced by scalable neural network kernels; one variant per ``m``.

Roles: :mod:`.config` (``SNNKConfig``), :mod:`.method` (the ``snnk`` entry function, target selection and
the rebuild of saved variants), :mod:`.blocks` (finding blocks, the bundled ``SNNKBlock``, surgery),
:mod:`.features` (the random feature maps), :mod:`.fit` (closed-form ridge fit and feature selection).
"""

from .config import MODES, SNNKConfig
from .features import KINDS
from .method import rebuild, select_targets, snnk

__all__ = ["snnk", "SNNKConfig", "KINDS", "MODES", "select_targets", "rebuild"]
