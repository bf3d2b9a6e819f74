"""SortedNet (arXiv 2309.00255): nested sub-networks by width and depth, trained at once.

Roles: :mod:`.config` (``SortedNetConfig``), :mod:`.method` (the ``sortednet`` entry function and the
rebuild of saved variants), :mod:`.supernet` (``SortedNet``: shared weights, sandwich training, extraction).
"""

from .config import STRATEGIES, SortedNetConfig
from .method import rebuild, sortednet
from .supernet import SortedNet

__all__ = ["sortednet", "SortedNetConfig", "SortedNet", "STRATEGIES", "rebuild"]
