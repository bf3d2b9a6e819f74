"""``Family`` and ``Variant``: what every compression method returns.

A family is a list of variants ordered by MACs, cheapest first. Each variant is a standalone
``nn.Module`` with its cost and metrics. ``Family.save`` writes a JSON recipe plus one safetensors file
per variant (no pickled modules); ``Family.load`` rebuilds each module from the recipe (the method's
``rebuild`` on the base model) and loads its weights.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.runtime.budget import pick_by_budget
from slimkit.runtime.errors import ConfigError, SlimkitError, VariantError

from .cost import count_macs, count_params
from .input_axes import SINGLE_INPUT, find_dynamic_axes
from .outputs import Output, output_to_json, select_output, selector_of

__all__ = ["Variant", "Family", "register_rebuilder", "variant_config", "upgrade_variant_config"]

FAMILY_FORMAT = "slimkit-family"
FAMILY_VERSION = 1

# method name -> rebuild(base_model, variant_config, example_input) -> nn.Module with the variant's shapes;
# variant_config is in the variant_config() layout (upgrade_variant_config turns older ones into it)
_REBUILDERS: dict[str, Callable[[nn.Module, dict, torch.Tensor], nn.Module]] = {}


def register_rebuilder(method: str):
    """Register how ``Family.load`` rebuilds a variant's module for ``method`` (decorator)."""

    def deco(fn):
        _REBUILDERS[method] = fn
        return fn

    return deco


def variant_config(recipe: Any, shape: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A variant's ``config`` in the one layout every method uses.

    ``{"method": name, "recipe": the method's config as a dict (the exact options that made it),
    "shape": what rebuilds the variant's module from the base model (channels kept, units removed, ...),
    "info": what was measured on the way (search reward, fit time, ...), not needed to rebuild}``.

    Args:
        recipe: the method's :class:`~slimkit.compress.config.MethodConfig`.
        shape: the architecture of this variant (JSON-ready).
        info: measurements of this variant (JSON-ready).
    """
    return {"method": recipe.METHOD, "recipe": recipe.to_dict(), "shape": dict(shape), "info": dict(info or {})}


def upgrade_variant_config(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` in the :func:`variant_config` layout. Families saved before that layout kept the recipe
    under the method's name and everything else at the top level: the recipe moves to ``"recipe"`` and the
    rest to ``"shape"``."""
    if "recipe" in config and "shape" in config:
        return config
    rest = dict(config)
    recipe = rest.pop(method, {})
    return {"method": method, "recipe": recipe, "shape": rest, "info": {}}


@dataclass
class Variant:
    """One member of a family: a plain ``nn.Module`` plus its cost and quality."""

    name: str
    model: nn.Module
    params: int
    macs: int
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measure(cls, name: str, model: nn.Module, example_input: torch.Tensor, *,
                metrics: dict[str, float] | None = None, config: dict[str, Any] | None = None) -> Variant:
        """Build a variant, counting its parameters and MACs on ``example_input``."""
        model.eval()
        return cls(name, model, count_params(model), count_macs(model, example_input),
                   dict(metrics or {}), dict(config or {}))

    def __repr__(self) -> str:
        m = ", ".join(f"{k}={v:.4g}" for k, v in self.metrics.items())
        return f"Variant({self.name!r}, params={self.params:,}, macs={self.macs:,}{', ' + m if m else ''})"


class Family:
    """Variants of one compressed model, cheapest first.

    Args:
        variants: the members; sorted here by (MACs, params).
        method: the method that made them (``"sortednet"``, ...), used to rebuild them on load.
        example_input: a tensor with the model's input shape and dtype (batch first); two rows of it are
            kept (an export traced at batch 1 can bake the batch into the graph).
        task: ``"classification"`` or ``"regression"``.
        source: ``{"params", "macs", "metrics"}`` of the uncompressed model.
        base: how to rebuild the base model without the user's help (zoo name and kwargs), or None.
        dynamic_dims: the input's axes that may vary, ``{axis: name}``; default: found from the largest
            variant when first needed (see :attr:`dynamic_dims`).
    """

    def __init__(self, variants: list[Variant], *, method: str, example_input: torch.Tensor,
                 task: str = "classification", source: dict | None = None, base: dict | None = None,
                 dynamic_dims: Mapping[int, str] | None = None):
        if not variants:
            raise ConfigError("a Family needs at least one variant, got none")
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names must be unique, got {names}")
        self.variants = sorted(variants, key=lambda v: (v.macs, v.params))
        self.method = method
        self.task = task
        self.example_input = example_input.detach()[:2].clone()
        self.source = dict(source or {})
        self.base = base
        self._dynamic_dims = {int(a): str(n) for a, n in dynamic_dims.items()} if dynamic_dims is not None else None

    # -- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.variants)

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.variants)

    def __getitem__(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise VariantError(f"no variant named {name!r}; this family has {self.names}")

    @property
    def names(self) -> list[str]:
        """The variants' names, cheapest first."""
        return [v.name for v in self.variants]

    @property
    def output(self) -> Output:
        """The ``output=`` selector the variants were made with (their forward returns that tensor), or None."""
        return selector_of(self.largest.model)

    @property
    def dynamic_dims(self) -> dict[int, str]:
        """The axes of the input that may vary, ``{axis: name}``: the batch, and the sequence of recurrent,
        attention and token models (``{0: "batch", 1: "sequence"}``). Found by running the largest variant
        at other sizes (:func:`slimkit.compress.input_axes.find_dynamic_axes`), saved with the family, and
        exported as dynamic by ``export.bundle`` (whose ``dynamic_dims=`` overrides them)."""
        if self._dynamic_dims is None:
            found = find_dynamic_axes(self.largest.model, {SINGLE_INPUT: self.example_input})
            self._dynamic_dims = found[SINGLE_INPUT]
        return dict(self._dynamic_dims)

    @property
    def largest(self) -> Variant:
        """The most expensive variant: ``budget`` fractions are of its MACs."""
        return self.variants[-1]

    @property
    def smallest(self) -> Variant:
        """The cheapest variant."""
        return self.variants[0]

    def select(self, budget: float = 1.0, *, fallback: str | None = None) -> Variant:
        """The largest variant whose MACs are at most ``budget`` x the largest variant's MACs.

        Raises:
            BudgetError: ``budget`` is not in (0, 1], or nothing fits and ``fallback`` is None.
        """
        i = pick_by_budget([v.macs for v in self.variants], budget, fallback=fallback, names=self.names)
        return self.variants[i]

    def summary(self) -> str:
        """A plain-text table of the variants."""
        keys = sorted({k for v in self.variants for k in v.metrics})
        head = f"{'variant':<14}{'params':>12}{'MACs':>14}" + "".join(f"{k:>12}" for k in keys)
        rows = [head]
        for v in self.variants:
            rows.append(f"{v.name:<14}{v.params:>12,}{v.macs:>14,}"
                        + "".join(f"{v.metrics.get(k, float('nan')):>12.4f}" for k in keys))
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Family(method={self.method!r}, variants={self.names})"

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``family.json`` and one ``<variant>.safetensors`` per variant, atomically."""
        from safetensors.torch import save_model

        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise ConfigError(f"{path} exists and is not empty; choose a new directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            recipe = {
                "format": FAMILY_FORMAT, "version": FAMILY_VERSION, "method": self.method,
                "task": self.task, "source": self.source, "base": self.base, "adapt": self._adapt_record(),
                "example_input": {"shape": list(self.example_input.shape),
                                  "dtype": str(self.example_input.dtype).removeprefix("torch."),
                                  "dynamic_dims": {str(a): n for a, n in self.dynamic_dims.items()}},
                "variants": [],
            }
            for v in self.variants:
                # one copy of tied weights (GPT-2's lm_head and wte); load_model ties them back
                save_model(v.model, str(tmp / f"{v.name}.safetensors"), force_contiguous=True)
                recipe["variants"].append({"name": v.name, "params": v.params, "macs": v.macs,
                                           "metrics": v.metrics, "config": v.config,
                                           "weights": f"{v.name}.safetensors"})
            (tmp / "family.json").write_text(json.dumps(recipe, indent=2))
            if path.exists():
                path.rmdir()
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    def _adapt_record(self) -> dict | None:
        """How the methods adapted the base model (:func:`slimkit.compress.preamble.adapt`), as JSON."""
        model = self.largest.model
        if not hasattr(model, "slimkit_adapt") and self.output is None:
            return None
        return {"output": output_to_json(self.output),
                "explicit": bool(getattr(model, "slimkit_adapt", {}).get("explicit"))}

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module | None = None, *, output: Output = None) -> Family:
        """Rebuild a saved family. ``model`` is the base model the family was made from; it may be
        omitted when that model came from ``slimkit.compress.zoo``. ``output`` is the ``output=`` selector
        the family was made with; needed only when that was a function (a name or an index is saved)."""
        from safetensors.torch import load_model

        path = Path(path)
        meta_file = path / "family.json"
        if not meta_file.is_file():
            raise SlimkitError(f"{path} is not a saved Family (no family.json); save one with Family.save")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FAMILY_FORMAT or meta.get("version") != FAMILY_VERSION:
            raise SlimkitError(f"{meta_file} has format {meta.get('format')!r} version "
                               f"{meta.get('version')!r}; this slimkit reads {FAMILY_FORMAT} v{FAMILY_VERSION}")
        if model is None:
            if not meta.get("base"):
                raise ConfigError(f"{path} was made from a user model: pass it as Family.load(path, model=...)")
            from .zoo import build

            model = build(meta["base"]["name"], **meta["base"].get("kwargs", {}))
        model = _adapted(model, meta.get("adapt"), output, path)
        method = meta["method"]
        if method not in _REBUILDERS:
            import importlib

            importlib.import_module(f"slimkit.compress.{method}")  # registers its rebuilder
        rebuild = _REBUILDERS[method]
        spec = meta["example_input"]
        example = torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"]))
        variants = []
        for rec in meta["variants"]:
            config = upgrade_variant_config(method, rec["config"])
            module = rebuild(model, config, example)
            load_model(module, str(path / rec["weights"]))
            module.eval()
            variants.append(Variant(rec["name"], module, rec["params"], rec["macs"], rec["metrics"], config))
        dims = spec.get("dynamic_dims")  # families saved before it was recorded find it again
        return cls(variants, method=method, example_input=example, task=meta["task"],
                   source=meta["source"], base=meta["base"],
                   dynamic_dims={int(a): n for a, n in dims.items()} if dims is not None else None)


def _adapted(model: nn.Module, record: dict | None, output: Output, path: Path) -> nn.Module:
    """The base model adapted as the methods adapted it when the family was made (families saved before
    adaptation existed have no record: the model is used as it is)."""
    saved = (record or {}).get("output")
    if isinstance(saved, dict) and output is None:
        raise ConfigError(f"{path} was made with output={saved['function']} (a function, which is not saved); "
                          "pass it again: Family.load(path, model, output=that_function)")
    chosen = output if output is not None else saved
    if record and record.get("explicit"):
        from .preamble import adapt

        return adapt(model, output=chosen)
    return select_output(copy.deepcopy(model), chosen) if chosen is not None else model
