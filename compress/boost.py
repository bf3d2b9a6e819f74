"""Gradient-boosted sequential layers: a model's head replaced by a hidden layer grown by gradient boosting.

Implements Emami and Martinez-Munoz, "Sequential Training of Neural Networks with Gradient Boosting",
IEEE Access 11 (2023), arXiv 1909.12098 (GBNN), on the frozen features of a trained backbone:

1. ``F0`` is the constant that minimises the loss on the training set: the per-output mean for
   regression (MSE), the centred log class priors for classification (softmax cross-entropy).
2. For ``t = 1..T``: the pseudo-residuals ``r = -dL/dF`` (``onehot(y) - softmax(F)``, or ``y - F``)
   are fitted by a one-hidden-layer net ``h_t`` with ``units`` neurons (full-batch L-BFGS on squared
   error) on a random subsample of the rows; ``rho_t = shrinkage x`` the Newton step of the loss along
   ``h_t`` on all rows; ``F += rho_t h_t(x)``.
3. Merge: the ``T`` nets become one ``Linear -> activation -> Linear`` with ``T x units`` hidden units
   (first layers concatenated, second layers scaled by ``rho_t``, output bias ``F0 + sum rho_t c_t``).
   Keeping the first ``t`` stages with the cumulative bias of stage ``t`` is exactly the boosted model
   stopped at step ``t``; each stage count is a variant of the returned :class:`Family`.

Example:
    >>> from slimkit import compress
    >>> fam = compress.boost(model, train=splits.train, val=splits.val, stages=8, units=8)
    >>> fam.names
    ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8']
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.runtime.errors import ConfigError, UnsupportedModelError

from .cost import count_macs, count_params
from .family import Family, Variant, register_rebuilder
from .modules import hooks, replace_submodule
from .train import TASKS, _device, evaluate, progress_bar, set_seed

__all__ = ["BoostConfig", "Booster", "boost", "boosted_head", "ACTIVATIONS"]

ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def _int_at_least_1(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {v!r}")


@dataclass
class BoostConfig:
    """Options of :func:`boost` (a JSON-serialisable recipe, stored with every variant).

    Attributes:
        stages: boosting steps T; the merged layer has ``stages * units`` hidden units.
        units: hidden units J of each step's net.
        shrinkage: learning rate in (0, 1] applied to each Newton step.
        subsample: fraction of the training rows, in (0, 1], each step's net is fitted on.
        task: ``"classification"`` (softmax cross-entropy) or ``"regression"`` (MSE).
        activation: hidden activation, one of :data:`ACTIVATIONS`.
        max_iter: L-BFGS iterations per step.
        l2: L2 penalty on each step's weights, scaled like scikit-learn's ``alpha`` (``l2 / 2n * |W|^2``).
        head: qualified name of the replaced ``nn.Linear`` (None: the last Linear that runs).
        seed: seeds initialisation and subsampling.
    """

    stages: int = 10
    units: int = 8
    shrinkage: float = 0.3
    subsample: float = 0.5
    task: str = "classification"
    activation: str = "tanh"
    max_iter: int = 200
    l2: float = 1.0
    head: str | None = None
    seed: int = 0
    version: int = field(default=1)

    def __post_init__(self):
        _int_at_least_1("stages", self.stages)
        _int_at_least_1("units", self.units)
        _int_at_least_1("max_iter", self.max_iter)
        for name in ("shrinkage", "subsample"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"{name} must be a number in (0, 1], got {v!r}")
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not one of {TASKS}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation={self.activation!r} is not one of {tuple(ACTIVATIONS)}")
        if isinstance(self.l2, bool) or not isinstance(self.l2, (int, float)) or self.l2 < 0:
            raise ConfigError(f"l2 must be a number >= 0, got {self.l2!r}")
        if self.head is not None and not isinstance(self.head, str):
            raise ConfigError(f"head must be a module name (str) or None, got {self.head!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def boosted_head(in_features: int, hidden: int, out_features: int, activation: str) -> nn.Sequential:
    """The merged layer's shape: ``Linear(in, hidden) -> activation -> Linear(hidden, out)``."""
    return nn.Sequential(OrderedDict(hidden=nn.Linear(in_features, hidden), act=ACTIVATIONS[activation](),
                                     out=nn.Linear(hidden, out_features)))


class Booster:
    """GBNN on a feature matrix: fit the stages, predict with the first ``t``, merge them into one layer.

    Args:
        config: the boosting options (``head`` is not used here).

    Example:
        >>> b = Booster(BoostConfig(stages=4, units=4)).fit(x, y)     # x (N, F) float, y (N,) labels
        >>> torch.allclose(b.head(2)(x), b.predict(x, 2), atol=1e-5)
        True
    """

    def __init__(self, config: BoostConfig):
        self.config = config
        self.f0 = torch.zeros(0)
        self.mean = self.std = torch.zeros(0)
        self.learners: list[nn.Sequential] = []  # h_t on standardised features
        self.rhos: list[float] = []               # shrinkage x Newton step, per stage
        self.train_loss: list[float] = []         # loss of F after each stage on the training rows

    # -- the loss -------------------------------------------------------------------------------------
    def _loss(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.task == "classification":
            return F.cross_entropy(f, y)
        return F.mse_loss(f, y)

    def _residuals(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.task == "classification":  # -dL/dF of the summed cross-entropy
            return F.one_hot(y, f.shape[1]).to(f.dtype) - f.softmax(1)
        return y - f

    def _newton_step(self, f: torch.Tensor, h: torch.Tensor, r: torch.Tensor) -> float:
        """argmin over rho of the loss's second-order expansion along ``h`` at ``F``: g / H, where
        ``g = sum <h, r>`` and ``H = sum h^T (diag p - p p^T) h`` (classification) or ``sum |h|^2``."""
        g = (h * r).sum()
        if self.config.task == "classification":
            p = f.softmax(1)
            curv = ((h * h * p).sum() - ((h * p).sum(1) ** 2).sum())
        else:
            curv = (h * h).sum()
        if curv <= 1e-12 * max(1, h.shape[0]):  # h carries no signal (or a constant shift of the logits)
            return 0.0
        return float(g / curv)

    # -- fitting --------------------------------------------------------------------------------------
    def _fit_learner(self, x: torch.Tensor, r: torch.Tensor) -> nn.Sequential:
        cfg = self.config
        net = boosted_head(x.shape[1], cfg.units, r.shape[1], cfg.activation)
        opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=cfg.max_iter, history_size=20,
                                tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")
        weights = (net.hidden.weight, net.out.weight)
        reg = cfg.l2 / (2 * x.shape[0])

        def closure():
            opt.zero_grad()
            loss = 0.5 * ((net(x) - r) ** 2).sum(1).mean() + reg * sum((w * w).sum() for w in weights)
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return net.requires_grad_(False).eval()

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, *, classes: int | None = None,
            progress: bool = False) -> Booster:
        """Boost on features ``x`` (N, F) and targets ``y``: class indices (N,) or values (N, K).

        ``classes`` is the number of logits (default: the largest label + 1).
        """
        cfg = self.config
        set_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        if x.dim() != 2 or x.shape[0] < 2 or len(y) != x.shape[0]:
            raise ConfigError(f"boosting needs features (N >= 2, F) and N targets, got features {tuple(x.shape)} "
                              f"and targets {tuple(y.shape)}")
        x = x.float()
        self.mean, self.std = x.mean(0), x.std(0)
        self.std[self.std < 1e-8] = 1.0  # constant features stay at 0
        xs = (x - self.mean) / self.std  # (N, F)
        n = x.shape[0]
        if cfg.task == "classification":
            k = classes or int(y.max()) + 1
            prior = torch.bincount(y, minlength=k).float().clamp_min(0.5) / n
            self.f0 = prior.log() - prior.log().mean()  # argmin of the cross-entropy over constants
        else:
            self.f0 = y.mean(0)
        f = self.f0.expand(n, -1).clone()  # (N, K)
        self.learners, self.rhos, self.train_loss = [], [], []
        m = max(1, round(cfg.subsample * n))
        bar = progress_bar(range(cfg.stages), enabled=progress, desc="boost", total=cfg.stages)
        for _ in bar:
            r = self._residuals(f, y)
            rows = torch.randperm(n, generator=gen)[:m] if m < n else slice(None)
            net = self._fit_learner(xs[rows], r[rows])
            h = net(xs)
            rho = cfg.shrinkage * self._newton_step(f, h, r)
            f += rho * h
            self.learners.append(net)
            self.rhos.append(rho)
            self.train_loss.append(float(self._loss(f, y)))
            if progress:
                bar.set_postfix(loss=f"{self.train_loss[-1]:.4g}")  # type: ignore[attr-defined]
        if 0.0 in self.rhos:
            warnings.warn(f"{self.rhos.count(0.0)} boosting stage(s) found no direction that lowers the loss "
                          "and contribute nothing; the residuals may already be fitted", stacklevel=3)
        return self

    # -- using the stages ----------------------------------------------------------------------------
    def _stages(self, t: int | None) -> int:
        t = len(self.learners) if t is None else t
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= len(self.learners):
            raise ConfigError(f"stages={t!r}: this booster has stages 0..{len(self.learners)}")
        return t

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """``F0 + sum_{s <= t} rho_s h_s(x)``, stage by stage (raw logits or values, (N, K))."""
        xs = (x.float() - self.mean) / self.std
        f = self.f0.expand(x.shape[0], -1).clone()
        for net, rho in zip(self.learners[:self._stages(t)], self.rhos):
            f += rho * net(xs)
        return f

    @torch.no_grad()
    def head(self, t: int | None = None) -> nn.Sequential:
        """The first ``t`` stages merged into one layer (``t * units`` hidden units), standardisation folded
        into the first Linear and the cumulative output bias of stage ``t``."""
        t = self._stages(t)
        if t == 0:
            raise ConfigError("a merged head needs at least one stage; stages=0 is the constant F0")
        nets, rhos = self.learners[:t], self.rhos[:t]
        w1 = torch.cat([n.hidden.weight for n in nets])  # (t J, F), on standardised inputs
        b1 = torch.cat([n.hidden.bias for n in nets])
        w2 = torch.cat([rho * n.out.weight for n, rho in zip(nets, rhos)], 1)  # (K, t J)
        b2 = self.f0 + sum(rho * n.out.bias for n, rho in zip(nets, rhos))
        merged = boosted_head(w1.shape[1], w1.shape[0], w2.shape[0], self.config.activation)
        merged.hidden.weight.copy_(w1 / self.std)  # W (x - mu) / sd = (W / sd) x - W (mu / sd)
        merged.hidden.bias.copy_(b1 - w1 @ (self.mean / self.std))
        merged.out.weight.copy_(w2)
        merged.out.bias.copy_(b2)
        return merged.eval()


# -- the model side -----------------------------------------------------------------------------------
def _find_head(model: nn.Module, name: str | None, example: torch.Tensor) -> tuple[str, nn.Linear]:
    """The replaced Linear: ``name``, or the last ``nn.Linear`` to run on ``example``."""
    modules = dict(model.named_modules())
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    shown = [n or "''" for n in linears]
    if name is None:
        ran: list[str] = []
        with hooks(modules[n].register_forward_hook(lambda *_, _n=n: ran.append(_n)) for n in linears), \
                torch.no_grad():
            model(example)
        if not ran:
            raise UnsupportedModelError(f"{type(model).__name__} runs no nn.Linear on the example input, so it has "
                                        "no head to replace; boost grows a new Linear head on its features")
        return ran[-1], modules[ran[-1]]  # type: ignore[return-value]
    if name not in modules:
        raise ConfigError(f"head={name!r} is not a module of {type(model).__name__}; its nn.Linear layers are "
                          f"{shown} (pass one of these qualified names)")
    if not isinstance(modules[name], nn.Linear):
        raise ConfigError(f"head={name!r} is a {type(modules[name]).__name__}, not an nn.Linear; boost replaces a "
                          f"Linear head: pass one of {shown}")
    return name, modules[name]  # type: ignore[return-value]


def _check_head(model: nn.Module, name: str, head: nn.Linear, example: torch.Tensor) -> None:
    """The head must run once on (batch, features) and its output must be the model's output."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    with hooks([head.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))]), torch.no_grad():
        out = model(example)
    label = f"head {name or type(head).__name__!r}"
    if len(seen) != 1:
        raise UnsupportedModelError(f"{label} runs {len(seen)} times per forward pass; boost replaces a head "
                                    "that runs once: pass head= the model's final Linear")
    x, h = seen[0]
    if x.dim() != 2:
        raise UnsupportedModelError(f"{label} receives inputs of shape {tuple(x.shape)}; boost needs one feature "
                                    "vector per sample, (batch, features): pass head= a Linear on pooled features")
    same = (isinstance(out, torch.Tensor) and out.numel() == h.numel() and out.shape[:1] == h.shape[:1]
            and torch.equal(out.reshape(h.shape), h))
    if not same:
        raise UnsupportedModelError(f"the output of {type(model).__name__} is not the output of {label} (it is "
                                    "transformed after the head); boost fits the head to the model's loss, so "
                                    "pass head= the Linear whose output the model returns")


@torch.no_grad()
def _features(model: nn.Module, head: nn.Linear, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's inputs (N, F) over ``loader`` and the targets, in one pass of the frozen model."""
    feats: list[torch.Tensor] = []
    targets, device = [], _device(model)
    with hooks([head.register_forward_hook(lambda _m, args, _out: feats.append(args[0].detach().float().cpu()))]):
        for x, y in loader:
            model(x.to(device))
            targets.append(y)
    if not targets:
        raise ConfigError("a loader yielded no samples; pass loaders over non-empty datasets")
    return torch.cat(feats), torch.cat(targets)


def _targets(y: torch.Tensor, task: str, outputs: int, split: str) -> torch.Tensor:
    if task == "classification":
        if y.dtype.is_floating_point or y.dim() != 1:
            raise ConfigError(f"task='classification' needs integer class labels of shape (N,) in the {split} "
                              f"loader, got {y.dtype} {tuple(y.shape)}; use task='regression' for real targets")
        if int(y.min()) < 0 or int(y.max()) >= outputs:
            raise ConfigError(f"the {split} labels span {int(y.min())}..{int(y.max())} but the head has {outputs} "
                              "outputs (one logit per class)")
        return y.long()
    if y.numel() != y.shape[0] * outputs:
        raise ConfigError(f"task='regression' needs {outputs} target value(s) per sample (the head's outputs) in "
                          f"the {split} loader, got targets of shape {tuple(y.shape)}")
    return y.float().reshape(-1, outputs)


def _with_head(root: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """``root`` with the module at ``name`` replaced: the modules on the path are shallow copies, every
    other module (the frozen backbone) is shared, not copied."""
    if name == "":
        return new
    *path, last = name.split(".")
    top = parent = copy.copy(root)
    parent._modules = type(root._modules)(root._modules)
    for part in path:
        child = copy.copy(parent._modules[part])
        child._modules = type(child._modules)(child._modules)
        parent._modules[part] = child
        parent = child
    parent._modules[last] = new
    return top


def boost(model: nn.Module, *, train: DataLoader, val: DataLoader | None = None, head: str | None = None,
          stages: int = 10, units: int = 8, shrinkage: float = 0.3, subsample: float = 0.5,
          task: str = "classification", example_input: torch.Tensor | None = None, progress: bool = True,
          seed: int = 0, **options) -> Family:
    """Replace ``model``'s head by a gradient-boosted hidden layer (GBNN, arXiv 1909.12098).

    The backbone (everything but the head) is frozen and shared by all variants; the head's inputs are
    computed once over ``train`` (kept in memory, N x features floats) and ``stages`` one-hidden-layer
    nets of ``units`` neurons are boosted on them. Variant ``s<t>`` keeps the first ``t`` stages: exactly
    the boosted model stopped at step ``t``.

    Args:
        model: a trained model whose output is its head's output (never modified).
        train: loader of ``(inputs, targets)`` the stages are fitted on (labels, or values for regression).
        val: optional loader for each variant's metrics.
        head: qualified name of the ``nn.Linear`` to replace (default: the last Linear that runs).
        stages: boosting steps; units: neurons per step (the merged head has ``stages * units``).
        shrinkage: multiplies every Newton step, in (0, 1]; subsample: fraction of rows per step, in (0, 1].
        task: ``"classification"`` (softmax cross-entropy) or ``"regression"`` (MSE).
        example_input: one input batch; taken from ``train`` when omitted.
        progress: show a progress bar over the stages; seed: seeds initialisation and subsampling.
        **options: the rest of :class:`BoostConfig` (``activation``, ``max_iter``, ``l2``, ``stage_counts``).

    Returns:
        A :class:`Family` with one variant per kept stage count, cheapest first, named ``s1``, ``s2``, ...
        Metrics: ``train_loss`` of the boosted model at that step, plus the ``val`` metrics.

    Raises:
        ConfigError: a bad option, an unknown or non-Linear ``head`` (the message lists the candidates),
            targets that do not fit the task.
        UnsupportedModelError: no Linear runs, or the model transforms the head's output.

    Example:
        >>> splits = data.sklearn_dataset("digits")
        >>> fam = boost(nn.Linear(64, 10), train=splits.train, val=splits.val, stages=8, units=8)
        >>> fam.names[:3]
        ['s1', 's2', 's3']
    """
    counts = options.pop("stage_counts", None)
    config = BoostConfig(stages=stages, units=units, shrinkage=shrinkage, subsample=subsample, task=task,
                         head=head, seed=seed, **options)
    counts = _stage_counts(counts, config.stages)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for split, loader in (("train", train), ("val", val)):
        if loader is not None and not isinstance(loader, DataLoader):
            raise ConfigError(f"{split} must be a torch DataLoader of (inputs, targets), got {type(loader).__name__}")
    if example_input is None:
        example_input = next(iter(train))[0][:2]
    backbone = copy.deepcopy(model).eval().requires_grad_(False)
    device = _device(backbone)
    example_input = example_input.to(device)
    name, old = _find_head(backbone, config.head, example_input)
    _check_head(backbone, name, old, example_input)
    outputs = old.out_features
    if task == "classification" and outputs < 2:
        raise ConfigError(f"head {name!r} has {outputs} output; task='classification' needs one logit per class "
                          "(>= 2 outputs, softmax cross-entropy); use task='regression' for one real output")
    source = {"params": count_params(model), "macs": count_macs(backbone, example_input)}
    gen = getattr(train, "generator", None)
    if isinstance(gen, torch.Generator):  # the same rows in the same order for the same seed (as fit does)
        gen.manual_seed(seed)
    x_tr, y_tr = _features(backbone, old, train)
    booster = Booster(config).fit(x_tr, _targets(y_tr, task, outputs, "train"), classes=outputs,
                                  progress=progress)
    val_feats = None
    if val is not None:
        x_va, y_va = _features(backbone, old, val)
        val_feats = DataLoader(TensorDataset(x_va, _targets(y_va, task, outputs, "val")), batch_size=1024)
        source["metrics"] = evaluate(backbone, val, task=task)
    variants = []
    for t in counts:
        merged = booster.head(t)
        metrics = {"train_loss": booster.train_loss[t - 1]}
        if val_feats is not None:  # the model's output is the head's, so the head on val features suffices
            metrics.update(evaluate(merged, val_feats, task=task))
        merged.to(device)
        shape = {"head": name, "stages": t, "units": config.units, "in_features": old.in_features,
                 "out_features": outputs, "activation": config.activation, "rho": booster.rhos[:t]}
        variants.append(Variant.measure(f"s{t}", _with_head(backbone, name, merged), example_input,
                                        metrics=metrics, config={**shape, "boost": config.to_dict()}))
    return Family(variants, method="boost", example_input=example_input.cpu(), task=task, source=source,
                  base=getattr(model, "slimkit_zoo", None))


def _stage_counts(counts, stages: int) -> tuple[int, ...]:
    if counts is None:
        return tuple(range(1, stages + 1))
    given = counts
    try:
        counts = tuple(counts)
        out = tuple(sorted({int(c) for c in counts if not isinstance(c, bool) and int(c) == c}))
    except (TypeError, ValueError):
        out = ()
    if not out or len(out) != len(counts) or not all(1 <= c <= stages for c in out):
        raise ConfigError(f"stage_counts must be distinct ints in 1..stages={stages}, got {given!r}")
    return out


@register_rebuilder("boost")
def _rebuild(base: nn.Module, config: dict, example_input: torch.Tensor) -> nn.Module:
    merged = boosted_head(config["in_features"], config["stages"] * config["units"], config["out_features"],
                          config["activation"])
    return replace_submodule(copy.deepcopy(base).eval().requires_grad_(False), config["head"], merged)
