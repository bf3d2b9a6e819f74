"""slimkit.runtime: load a bundle and serve its variants by compute budget, name or latency.

Imports only numpy, onnxruntime and the standard library (never torch), so it deploys on a box
without the training stack.

Example:
    >>> from slimkit import runtime
    >>> eng = runtime.load("out/bundle")          # doctest: +SKIP
    >>> y = eng.run(x, budget=0.5); eng.last       # doctest: +SKIP
    'w0.50'
    >>> runtime.serve("out/bundle", port=8000)     # doctest: +SKIP  (KServe v2 HTTP; slimkit[serve])
"""

from .engine import Engine, VariantInfo, load
from .errors import (
    BudgetError,
    BundleError,
    ConfigError,
    ExportError,
    InputError,
    MissingExtraError,
    SlimkitError,
    UnsupportedModelError,
    VariantError,
)
from .manifest import Manifest, read_manifest

__all__ = [
    "load", "serve", "Engine", "VariantInfo", "read_manifest", "Manifest",
    "SlimkitError", "ConfigError", "BudgetError", "VariantError", "InputError", "BundleError",
    "ExportError", "UnsupportedModelError", "MissingExtraError",
]


def __getattr__(name: str):
    if name == "serve":  # the server module (asyncio, thread pools) loads only when asked for
        from .server import serve

        globals()["serve"] = serve
        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
