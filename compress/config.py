"""``MethodConfig``: the one base of every method's options (a versioned dataclass that round-trips JSON).

Each method keeps its options in a small dataclass (``SortedNetConfig``, ``N2NConfig``, ...) derived from
:class:`MethodConfig`, as torchao does with its ``AOBaseConfig``. The base gives every config the same
behaviour:

* ``version``: the recipe's schema version (``VERSION`` of the class when it was written);
* ``to_dict()`` / ``from_dict(d)``: a JSON round trip, ``from_dict(json.loads(json.dumps(c.to_dict()))) == c``;
  unknown keys are refused with a message that lists the valid ones; a recipe from an older version is
  upgraded by the class's :meth:`MethodConfig.migrate`; one from a newer slimkit is refused;
* ``from_options(**kw)``: the same checks for keyword options given to an entry function;
* validation in one place: the subclass's :meth:`MethodConfig.validate`, run by ``__post_init__`` after
  JSON lists have been turned back into the tuples the fields declare;
* :meth:`MethodConfig.options`: every option with its default and its one-line help (read from the
  class docstring's ``Attributes:`` section), which the ``slimkit compress`` command lists.

The small ``check_*`` functions below are the shared validators the configs use, so every method refuses
the same bad value with the same message.

Example:
    >>> from slimkit.compress import SortedNetConfig
    >>> cfg = SortedNetConfig(widths=(0.5, 1.0), epochs=3)
    >>> SortedNetConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from slimkit.runtime.errors import ConfigError

__all__ = ["MethodConfig", "Option", "docstring_fields", "check_int", "check_choice", "check_fraction",
           "check_fractions", "check_bool"]

C = TypeVar("C", bound="MethodConfig")


@dataclass(frozen=True)
class Option:
    """One option of a method config, as the command line lists it."""

    name: str
    default: Any
    type: str
    help: str


@dataclass
class MethodConfig:
    """Base of every method's options: versioned, validated, JSON round trip (see the module docstring).

    Subclasses set ``METHOD`` (the method's name) and ``VERSION``, declare their options as dataclass
    fields with defaults, and implement :meth:`validate`.
    """

    METHOD: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    version: int = field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ConfigError(f"{type(self).__name__}: version must be an int >= 1, got {self.version!r}")
        if self.version > self.VERSION:
            raise ConfigError(f"{type(self).__name__} recipe version {self.version} was written by a newer "
                              f"slimkit (this one reads up to version {self.VERSION}); upgrade slimkit")
        self.version = self.VERSION
        self.validate()
        for f in dataclasses.fields(self):  # JSON has no tuples: give declared tuples back their type
            value = getattr(self, f.name)
            if isinstance(value, list) and str(f.type).startswith("tuple"):
                setattr(self, f.name, tuple(value))

    def validate(self) -> None:
        """Check every option and normalise it in place; raise :class:`ConfigError` naming the bad one."""

    # -- serialisation --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain JSON-ready data (tuples become lists when dumped)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Rebuild a config from :meth:`to_dict`'s output (or its JSON), upgrading older versions.

        Raises:
            ConfigError: ``data`` is not a mapping, holds unknown keys (the message lists the valid
                ones), comes from a newer slimkit, or fails validation.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}.from_dict needs a mapping of options, got {type(data).__name__}")
        data = dict(data)
        version = data.get("version", 1)
        if isinstance(version, int) and not isinstance(version, bool) and 1 <= version < cls.VERSION:
            data = cls.migrate(data, version)
            data["version"] = cls.VERSION
        cls._refuse_unknown(data, what="recipe keys")
        return cls(**data)

    @classmethod
    def from_options(cls: type[C], **options: Any) -> C:
        """A config from keyword options, as the entry functions take them; unknown names are refused."""
        cls._refuse_unknown(options, what="options")
        return cls(**options)

    @classmethod
    def resolve(cls: type[C], config: Any, explicit: Mapping[str, Any], options: Mapping[str, Any]) -> C:
        """The config an entry function runs with: ``config`` when the user passed one, else one built
        from the entry's keyword arguments (``explicit``) and ``**options``.

        Raises:
            ConfigError: ``config`` is not this class, or it comes together with options that change it.
        """
        if config is None:
            return cls.from_options(**explicit, **options)
        if not isinstance(config, cls):
            raise ConfigError(f"config must be a {cls.__name__}, got {type(config).__name__}")
        defaults = cls.defaults()
        clash = sorted(k for k, v in explicit.items() if v != defaults.get(k) and v != getattr(config, k, v))
        if options or clash:
            raise ConfigError(f"{cls.METHOD or cls.__name__} got config= and also the options "
                              f"{sorted(set(options) | set(clash))}; pass either a config or keyword options")
        return config

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Upgrade a recipe written at ``version`` (< ``VERSION``) to the current layout. Override when
        ``VERSION`` is raised; the base knows only version 1."""
        return data

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option's default value."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        """The option names a recipe may hold (``version`` included)."""
        return [f.name for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def _refuse_unknown(cls, data: Mapping[str, Any], *, what: str) -> None:
        valid = cls.field_names()
        unknown = sorted(set(data) - set(valid))
        if unknown:
            name = cls.METHOD or cls.__name__
            raise ConfigError(f"{name} got unknown {what} {unknown}; valid ones: {sorted(valid)}")

    # -- documentation --------------------------------------------------------------------------------
    @classmethod
    def options(cls) -> list[Option]:
        """Every option (``version`` left out) with its default, type and help line from the docstring."""
        helps, defaults = docstring_fields(cls.__doc__ or ""), cls.defaults()
        return [Option(f.name, defaults.get(f.name), str(f.type), helps.get(f.name, ""))
                for f in dataclasses.fields(cls) if f.init and f.name != "version"]


def docstring_fields(doc: str, section: str = "Attributes") -> dict[str, str]:
    """``name -> text`` from a Google-style docstring section (``Attributes:``, ``Args:``; ``a, b: text``
    documents both), as :meth:`MethodConfig.options` and the ``slimkit compress`` help read them."""
    helps: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == f"{section}:")
    except StopIteration:
        return helps
    indent, current = None, []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        width = len(line) - len(line.lstrip())
        indent = width if indent is None else indent
        m = re.match(r"([A-Za-z_][\w, ]*):\s*(.*)", line.strip())
        if width == indent and m:
            current = [n.strip() for n in m.group(1).split(",") if n.strip()]
            for n in current:
                helps[n] = m.group(2).strip()
        elif width > indent:
            for n in current:
                helps[n] = f"{helps[n]} {line.strip()}"
    return helps


# -- shared validators -------------------------------------------------------------------------------------
def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (no truthy stand-ins such as 0 or ``"yes"``)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any], hint: str = "") -> Any:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {choices}" + (f"; {hint}" if hint else ""))
    return value


def check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0, low_open: bool = True,
                   high_open: bool = False) -> float:
    """``value`` as a float in the interval (``low``, ``high``] (ends as the flags say)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"{name} must be a number in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return float(value)


def check_fractions(name: str, values: Any, *, example: str = "(0.25, 0.5, 0.75, 1.0)", low: float = 0.0,
                    high: float = 1.0, low_open: bool = True, high_open: bool = False) -> tuple[float, ...]:
    """A non-empty, sorted, de-duplicated tuple of fractions, each as :func:`check_fraction` says."""
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    try:
        vals = tuple(sorted({float(v) for v in values}))
    except (TypeError, ValueError):
        vals = ()
    bad = [v for v in vals if not ((v > low if low_open else v >= low) and (v < high if high_open else v <= high))]
    if not vals or bad:
        raise ConfigError(f"{name} must be a non-empty sequence of fractions in {lo}{low:g}, {high:g}{hi}, got "
                          f"{values!r}" + (f"; out of range: {bad}" if bad else "") + f"; e.g. {example}")
    return vals
