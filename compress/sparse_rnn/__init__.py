"""Sparse RNN pruning (arXiv 2407.20601): unstructured, structured and random-graph sparsity for RNN/GRU/LSTM.

Roles: :mod:`.config` (``SparseRNNConfig``), :mod:`.method` (the ``sparse_rnn`` entry function, the
pruning schedule and fine-tuning, the rebuild of saved variants), :mod:`.masks` (recurrent weights, masks
that hold in forward and backward, magnitude and unit masks), :mod:`.shrink` (removing hidden units into a
smaller dense RNN), :mod:`.random_graphs` (Watts-Strogatz / Barabasi-Albert masks).
"""

from .config import GRAPHS, PRUNE_SCHEDULES, SCOPES, WEIGHT_KINDS, SparseRNNConfig
from .method import rebuild, sparse_rnn

__all__ = ["sparse_rnn", "SparseRNNConfig", "SCOPES", "PRUNE_SCHEDULES", "WEIGHT_KINDS", "GRAPHS", "rebuild"]
