"""N2N (arXiv 1709.06030): network-to-network compression by policy-gradient RL, on arbitrary models.

Roles: :mod:`.config` (``N2NConfig``), :mod:`.method` (the ``n2n`` entry function, the final Pareto family
and the rebuild of saved students), :mod:`.search` (building and scoring students, layer tables, budget
projection), :mod:`.policy_search` (the two-stage REINFORCE loop and its checkpoint).
"""

from .config import COSTS, RATIOS, N2NConfig
from .method import n2n, pareto_family, rebuild
from .policy_search import make_trainer
from .search import Search, Student

__all__ = ["n2n", "N2NConfig", "COSTS", "RATIOS", "Search", "Student", "pareto_family", "make_trainer",
           "rebuild"]
