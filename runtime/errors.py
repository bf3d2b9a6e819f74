"""The one slimkit exception hierarchy.

It lives in ``slimkit.runtime`` because the runtime is the bottom floor of the package (no torch, no
other slimkit import), so every other part can share these classes without pulling anything in.
Every message says what was received and what to do.
"""

from __future__ import annotations

__all__ = [
    "SlimkitError",
    "ConfigError",
    "BudgetError",
    "VariantError",
    "InputError",
    "BundleError",
    "ExportError",
    "UnsupportedModelError",
    "MissingExtraError",
]


class SlimkitError(Exception):
    """Base class of every error slimkit raises on purpose."""


class ConfigError(SlimkitError, ValueError):
    """An argument or option has a value slimkit cannot use (e.g. a width outside the menu)."""


class BudgetError(SlimkitError, ValueError):
    """A budget outside (0, 1], or one that no variant fits."""


class VariantError(SlimkitError, LookupError):
    """A variant name that the family or bundle does not have."""


class InputError(SlimkitError, ValueError):
    """An input tensor of the wrong shape, rank or dtype."""


class BundleError(SlimkitError):
    """A bundle that is missing, incomplete, tampered with or of an unknown format version."""


class ExportError(SlimkitError):
    """An export that failed or whose output does not match PyTorch."""


class UnsupportedModelError(SlimkitError):
    """A model structure the graph analysis cannot handle; the message names the module."""


class MissingExtraError(SlimkitError, ImportError):
    """An optional dependency is not installed; the message gives the ``pip install`` to run."""


def require(module: str, extra: str):
    """Import an optional module or raise :class:`MissingExtraError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"this feature needs the optional package {module!r}, which is not installed: "
            f'run pip install "slimkit[{extra}]"'
        ) from e
