"""Training, distillation and evaluation shared by every method.

One loop (:func:`fit`) trains a model on a ``DataLoader`` of ``(inputs, targets)``, optionally distilling
from a teacher (Hinton et al., 2015: "Distilling the Knowledge in a Neural Network"). The optimiser is
AdamW with a one-cycle (or cosine) learning-rate schedule stepped per batch (:func:`make_optimizer`),
which methods with their own loops reuse.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from slimkit.runtime.errors import ConfigError

__all__ = ["TASKS", "SCHEDULES", "set_seed", "progress_bar", "evaluate", "kd_loss", "task_loss",
           "make_optimizer", "fit", "device_of", "check_task"]

TASKS = ("classification", "regression")
SCHEDULES = ("onecycle", "cosine")

T = TypeVar("T")


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and PyTorch's RNGs.

    Example:
        >>> set_seed(0)
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress_bar(iterable: Iterable[T], *, enabled: bool, desc: str, total: int | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr, or return it untouched (and print nothing) when disabled.

    Example:
        >>> for _ in progress_bar(range(3), enabled=False, desc="steps"):
        ...     pass
    """
    if not enabled:
        return iter(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


def check_task(task: str) -> None:
    """Refuse a task other than ``"classification"`` or ``"regression"``."""
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not one of {TASKS}; use 'regression' for real-valued targets")


def task_loss(task: str = "classification") -> nn.Module:
    """The loss of a task: cross-entropy for classification, mean squared error for regression.

    Example:
        >>> task_loss("regression")
        MSELoss()
    """
    check_task(task)
    return nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton's distillation loss: ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, batch mean.

    The ``T^2`` factor keeps the gradient scale independent of the temperature, so the loss can be mixed
    with the task loss at a fixed weight.

    Example:
        >>> s, t = torch.randn(8, 10), torch.randn(8, 10)
        >>> kd_loss(s, t, temperature=2.0).shape
        torch.Size([])
    """
    if temperature <= 0:
        raise ConfigError(f"temperature={temperature!r}: pass a positive temperature such as 4.0")
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                          f"{tuple(teacher_logits.shape)} differ in shape; both models need the same outputs")
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, *, task: str = "classification") -> dict[str, float]:
    """Metrics of ``model`` on ``loader``, in eval mode and without gradients.

    Returns:
        ``{"accuracy": in [0, 1], "loss": mean cross-entropy}`` for classification, ``{"mse": ...}`` for
        regression. The model's train/eval mode is restored afterwards.

    Example:
        >>> from slimkit.compress import data, zoo
        >>> splits = data.sklearn_dataset("wine")
        >>> metrics = evaluate(zoo.MLP(in_features=13, num_classes=3), splits.val)
        >>> sorted(metrics)
        ['accuracy', 'loss']
    """
    check_task(task)
    was_training = model.training
    model.eval()
    device = device_of(model)
    total, loss_sum, correct = 0, 0.0, 0
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            n = y.shape[0]
            if task == "classification":
                loss_sum += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(-1) == y).sum().item()
            else:
                loss_sum += F.mse_loss(out, y.view_as(out), reduction="sum").item() / max(out[0].numel(), 1)
            total += n
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigError("the evaluation loader yielded no samples; pass a loader over a non-empty dataset")
    if task == "classification":
        return {"accuracy": correct / total, "loss": loss_sum / total}
    return {"mse": loss_sum / total}


def make_optimizer(params: Iterable[torch.Tensor] | Iterable[dict], *, lr: float, weight_decay: float,
                   epochs: int, steps_per_epoch: int, schedule: str = "onecycle",
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW plus a learning-rate schedule to step once per batch.

    Args:
        params: parameters or parameter groups.
        lr: peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        epochs: epochs the schedule spans.
        steps_per_epoch: batches per epoch (``len(train_loader)``).
        schedule: ``"onecycle"`` (cosine warm-up from ``lr / 25`` over the first 25% of the steps, then
            cosine decay to 0) or ``"cosine"`` (cosine decay from ``lr`` to 0, no warm-up).

    Example:
        >>> opt, sched = make_optimizer(nn.Linear(4, 2).parameters(), lr=1e-3, weight_decay=0.0,
        ...                             epochs=2, steps_per_epoch=10)
        >>> opt.step(); sched.step()
    """
    if not lr > 0:
        raise ConfigError(f"lr={lr!r}: pass a positive learning rate such as 3e-3")
    if not weight_decay >= 0:
        raise ConfigError(f"weight_decay={weight_decay!r}: pass a non-negative value such as 1e-4")
    for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{name}={v!r}: pass an int >= 1")
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule={schedule!r} is not one of {SCHEDULES}")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = epochs * steps_per_epoch
    if schedule == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    # one cycle (Smith & Topin, 2019, "Super-Convergence"): cosine warm-up from lr/25 to lr, then cosine
    # anneal to 0. A LambdaLR because torch's OneCycleLR divides by zero on runs of a few steps.
    warm = max(1, int(0.25 * total))

    def factor(step: int) -> float:
        if step < warm:
            return 0.04 + 0.96 * (1 - math.cos(math.pi * step / warm)) / 2
        return (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm)))) / 2

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit(model: nn.Module, train: DataLoader, val: DataLoader | None = None, *, epochs: int,
        lr: float = 3e-3, weight_decay: float = 1e-4, task: str = "classification",
        teacher: nn.Module | None = None, kd_alpha: float = 0.5, temperature: float = 4.0,
        schedule: str = "onecycle", progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train ``model`` in place with AdamW and a per-batch schedule, optionally distilling from ``teacher``.

    With a teacher the loss is ``(1 - kd_alpha) * task_loss + kd_alpha * distillation``, where the
    distillation term is :func:`kd_loss` on the teacher's logits (classification) or the MSE to the
    teacher's outputs (regression). The teacher runs in eval mode under ``no_grad``; its mode is restored.

    ``seed`` seeds Python, NumPy and PyTorch and re-seeds the train loader's ``generator`` (when it has
    one), so two fits from the same initial weights and seed end with identical weights.

    Args:
        model: the model to train (in place); it is left in eval mode.
        train: loader of ``(inputs, targets)``.
        val: optional loader evaluated after every epoch.
        epochs: passes over ``train``.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        task: ``"classification"`` (cross-entropy) or ``"regression"`` (MSE).
        teacher: optional model whose outputs the student also learns from.
        kd_alpha: weight of the distillation term in [0, 1].
        temperature: softmax temperature of the distillation term.
        schedule: ``"onecycle"`` or ``"cosine"`` (see :func:`make_optimizer`).
        progress: show a progress bar; ``False`` prints nothing.
        seed: random seed of the run.

    Returns:
        History: ``{"epoch": [...], "train_loss": [...], "val_<metric>": [...] (with val), "seconds": float}``.

    Raises:
        ConfigError: an argument out of range, or an empty train loader.

    Example:
        >>> from slimkit.compress import data, zoo
        >>> splits = data.sklearn_dataset("wine")
        >>> model = zoo.MLP(in_features=13, num_classes=3)
        >>> hist = fit(model, splits.train, splits.val, epochs=2, progress=False)
        >>> len(hist["train_loss"])
        2
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"epochs={epochs!r}: pass an int >= 1")
    check_task(task)
    if not 0.0 <= kd_alpha <= 1.0:
        raise ConfigError(f"kd_alpha={kd_alpha!r}: pass a weight in [0, 1] (0 ignores the teacher)")
    if not temperature > 0:
        raise ConfigError(f"temperature={temperature!r}: pass a positive temperature such as 4.0")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"{type(model).__name__} has no trainable parameters; nothing to fit")
    steps = len(train)
    if steps == 0:
        raise ConfigError("the train loader yields no batches; pass a non-empty loader "
                          "(or a smaller batch_size with drop_last)")
    set_seed(seed)
    gen = getattr(train, "generator", None)
    if isinstance(gen, torch.Generator):
        gen.manual_seed(seed)
    opt, sched = make_optimizer(model.parameters(), lr=lr, weight_decay=weight_decay, epochs=epochs,
                                steps_per_epoch=steps, schedule=schedule)
    criterion = task_loss(task)
    device = device_of(model)
    teacher_was_training = teacher.training if teacher is not None else False
    if teacher is not None:
        teacher.eval()
    hist: dict[str, Any] = {"epoch": [], "train_loss": []}
    start = time.perf_counter()
    bar = progress_bar(range(1, epochs + 1), enabled=progress, desc="fit", total=epochs)
    try:
        for epoch in bar:
            model.train()
            loss_sum, seen = 0.0, 0
            for x, y in train:
                x, y = x.to(device), y.to(device)
                out = model(x)
                loss = criterion(out, y if task == "classification" else y.view_as(out))
                if teacher is not None and kd_alpha > 0:
                    with torch.no_grad():
                        t_out = teacher(x.to(device_of(teacher))).to(device)
                    kd = kd_loss(out, t_out, temperature) if task == "classification" else F.mse_loss(out, t_out)
                    loss = (1 - kd_alpha) * loss + kd_alpha * kd
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.item() * y.shape[0]
                seen += y.shape[0]
            hist["epoch"].append(epoch)
            hist["train_loss"].append(loss_sum / max(seen, 1))
            if val is not None:
                for k, v in evaluate(model, val, task=task).items():
                    hist.setdefault(f"val_{k}", []).append(v)
            if progress:
                bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in hist.items() if k != "epoch"})  # type: ignore[attr-defined]
    finally:
        if progress:
            bar.close()  # type: ignore[attr-defined]
        if teacher is not None:
            teacher.train(teacher_was_training)
        model.eval()
    hist["seconds"] = time.perf_counter() - start
    return hist
