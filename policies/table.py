"""The N2N layer table (the policies' state) and the N2N reward.

N2N (Ashok et al., arXiv 1709.06030) describes a teacher as one row per layer or removable unit:
(type, kernel, stride, padding, outputs, skip start, skip end), to which slimkit adds the unit's
parameter count. The policies read the table normalised column by column to [0, 1]; the raw table (in
the units of the model) is what ``slimkit.compress.n2n`` builds from its graph analysis.

Example:
    >>> import numpy as np
    >>> raw = np.array([[0, 3, 1, 1, 16, 0, 0, 448], [4, 0, 0, 0, 10, 0, 0, 170]], dtype=float)
    >>> normalize_table(raw).shape
    (2, 8)
    >>> round(reward(0.25, 0.9, 0.95), 3)  # C = 0.75: 0.9375 * 0.947
    0.888
"""

from __future__ import annotations

import math

import numpy as np

from slimkit.runtime.errors import ConfigError

__all__ = ["LAYER_FEATURES", "N_FEATURES", "LAYER_TYPES", "INVALID_REWARD", "normalize_table", "reward",
           "check_table", "type_id"]

LAYER_FEATURES = ("type", "kernel", "stride", "padding", "outputs", "skip_start", "skip_end", "params")
N_FEATURES = len(LAYER_FEATURES)
LAYER_TYPES = ("conv", "linear", "norm", "block", "attention", "ffn", "other")

#: Reward of a student that cannot be built or evaluated (N2N's -1).
INVALID_REWARD = -1.0

# Columns spanning orders of magnitude are log-scaled before min-max scaling, so a 100x larger layer
# does not squash every other row's value towards 0.
_LOG_COLUMNS = (LAYER_FEATURES.index("outputs"), LAYER_FEATURES.index("params"))
_TYPE = LAYER_FEATURES.index("type")


def type_id(name: str) -> int:
    """Index of a layer type name in :data:`LAYER_TYPES` (the raw table's "type" column)."""
    if name not in LAYER_TYPES:
        raise ConfigError(f"unknown layer type {name!r}; expected one of {LAYER_TYPES}")
    return LAYER_TYPES.index(name)


def check_table(table: np.ndarray, *, name: str = "table") -> np.ndarray:
    """Validate a (L, N_FEATURES) table and return it as a float array.

    Raises:
        ConfigError: wrong rank or width, no rows, or non-finite values.
    """
    try:
        arr = np.asarray(table, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} must be a numeric array of shape (layers, {N_FEATURES}); {e}") from e
    if arr.ndim != 2 or arr.shape[1] != N_FEATURES:
        raise ConfigError(
            f"{name} must have shape (layers, {N_FEATURES}) with columns {LAYER_FEATURES}; "
            f"got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ConfigError(f"{name} is empty (shape {arr.shape}): the teacher needs at least one layer row")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return arr


def normalize_table(raw: np.ndarray) -> np.ndarray:
    """Scale a raw layer table column by column to [0, 1], as N2N's state.

    The "type" column is divided by ``len(LAYER_TYPES) - 1`` (the same layer type maps to the same value
    in every table, which policy transfer relies on). "outputs" and "params" are ``log1p``-scaled, then
    every other column is min-max scaled; a constant column becomes 0.

    Args:
        raw: float array (L, N_FEATURES); the "type" column holds the index into :data:`LAYER_TYPES`.

    Returns:
        float32 array (L, N_FEATURES) with values in [0, 1].

    Raises:
        ConfigError: the table has the wrong shape, no rows, non-finite values or an unknown type index.
    """
    arr = check_table(raw, name="raw layer table").copy()
    types = arr[:, _TYPE]
    if (types < 0).any() or (types > len(LAYER_TYPES) - 1).any() or (types != np.round(types)).any():
        raise ConfigError(f"the 'type' column must hold integer indices into {LAYER_TYPES}; "
                          f"got {sorted(set(types.tolist()))}")
    out = np.zeros_like(arr)
    out[:, _TYPE] = types / (len(LAYER_TYPES) - 1)
    for j in range(N_FEATURES):
        if j == _TYPE:
            continue
        col = arr[:, j]
        if j in _LOG_COLUMNS:
            col = np.log1p(np.maximum(col, 0.0))
        lo, hi = col.min(), col.max()
        if hi > lo:
            out[:, j] = (col - lo) / (hi - lo)
    return out.astype(np.float32)


def reward(cost_ratio: float, acc_student: float, acc_teacher: float) -> float:
    """N2N reward R = C(2 - C) * acc_student / acc_teacher with C = 1 - cost_ratio.

    ``C(2 - C)`` rewards compression with diminishing returns, so a tiny student with poor accuracy
    scores below a moderately compressed accurate one.

    Args:
        cost_ratio: student cost / teacher cost (params, MACs or latency), in (0, 1]. A student that
            costs more than its teacher (ratio > 1) is invalid and gets :data:`INVALID_REWARD`.
        acc_student: student validation accuracy (or any higher-is-better metric), >= 0.
        acc_teacher: teacher validation accuracy on the same split, > 0.

    Returns:
        The reward, in [0, 1] for a valid student (up to acc_student / acc_teacher > 1).

    Raises:
        ConfigError: a non-finite value, cost_ratio <= 0, acc_student < 0 or acc_teacher <= 0.
    """
    vals = {"cost_ratio": cost_ratio, "acc_student": acc_student, "acc_teacher": acc_teacher}
    for k, v in vals.items():
        if not isinstance(v, (int, float, np.number)) or not math.isfinite(float(v)):
            raise ConfigError(f"{k} must be a finite number; got {v!r}")
    if cost_ratio <= 0:
        raise ConfigError(f"cost_ratio must be in (0, 1] (student cost / teacher cost); got {cost_ratio}")
    if acc_teacher <= 0 or acc_student < 0:
        raise ConfigError(f"accuracies must satisfy acc_teacher > 0 and acc_student >= 0; "
                          f"got acc_student={acc_student}, acc_teacher={acc_teacher}")
    if cost_ratio > 1:
        return INVALID_REWARD
    c = 1.0 - float(cost_ratio)
    return float(c * (2.0 - c) * float(acc_student) / float(acc_teacher))
