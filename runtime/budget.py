"""The one budget rule, shared by ``Family.select`` and ``Engine.select`` (pure Python, no imports).

A budget is a fraction of the largest variant's MACs in (0, 1]; the rule serves the largest variant
whose MACs fit, and raises :class:`BudgetError` when none does unless ``fallback="smallest"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import BudgetError, ConfigError

FALLBACKS = (None, "smallest")


def check_budget(budget: object) -> float:
    """Return ``budget`` as a float, or raise :class:`BudgetError` if it is not a number in (0, 1]."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise BudgetError(
            f"budget must be a number in (0, 1] (a fraction of the largest variant's MACs), got {budget!r}"
        )
    b = float(budget)
    if not (0.0 < b <= 1.0):
        raise BudgetError(
            f"budget must be in (0, 1] (a fraction of the largest variant's MACs), got {budget!r}; "
            "use 1.0 for the largest variant"
        )
    return b


def pick_by_budget(macs: Sequence[float], budget: object, *, fallback: str | None = None,
                   names: Sequence[str] | None = None) -> int:
    """Index of the largest entry of ``macs`` (sorted ascending) that fits ``budget``."""
    if fallback not in FALLBACKS:
        raise ConfigError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    b = check_budget(budget)
    limit = b * max(macs)
    best = -1
    for i, m in enumerate(macs):
        # a tiny relative tolerance so that budget=0.5 admits a variant at exactly half the MACs
        if m <= limit * (1 + 1e-9):
            best = i
    if best >= 0:
        return best
    if fallback == "smallest":
        return 0
    smallest = min(macs) / max(macs)
    who = f" ({names[0]})" if names else ""
    raise BudgetError(
        f"no variant fits budget {b:g}: the smallest variant{who} needs {smallest:.3f} of the largest "
        f"one's MACs; raise the budget to at least {smallest:.3f} or pass fallback='smallest'"
    )
