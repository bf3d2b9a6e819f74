"""Sort each channel group by importance, so that prefixes of a trained model hold its strongest channels.

Nested (prefix) sub-networks cut the *last* channels of every group. In a trained model the order of
channels is arbitrary, so before sorted training we permute every group, strongest first. The permutation
is applied to every tensor dimension tied to the group, so the model computes exactly the same function
(tested). Importance is the L2 norm of the group's weights per channel (the group-magnitude criterion of
Torch-Pruning; OFA's ``re_organize_middle_weights`` and DynaBERT's rewiring do the same before elastic
training). Attention groups are sorted by whole heads.
"""

from __future__ import annotations

import torch
from torch import nn

from . import graph

__all__ = ["tied_dims", "sort_channels"]


def tied_dims(model: nn.Module, example_input: torch.Tensor, analysis: graph.Analysis,
              group: graph.ChannelGroup) -> list[tuple[str, int]] | None:
    """Every (state-dict entry, dim) indexed by ``group``'s channels, or None if the map is not identity."""
    _, index_map = graph.shrink(model, example_input, analysis, keep={group.root: group.size - group.unit})
    full = model.state_dict()
    tied = []
    for name, spec in index_map.items():
        for d, s in enumerate(spec):
            if isinstance(s, torch.Tensor):
                return None  # channels reach this tensor through a permutation (e.g. a concat): leave as is
            if s != full[name].shape[d]:
                if full[name].shape[d] != group.size:
                    return None  # the group is a slice of this dim (e.g. one input of a concat)
                tied.append((name, d))
    return tied


def sort_channels(model: nn.Module, example_input: torch.Tensor, analysis: graph.Analysis) -> None:
    """Permute every channel group of ``model`` in place, most important channels first."""
    state = model.state_dict()
    params = {n for n, _ in model.named_parameters()}
    for group in analysis.groups:
        tied = tied_dims(model, example_input, analysis, group)
        if not tied:
            continue
        score = torch.zeros(group.size, dtype=torch.float64)
        for name, d in tied:
            if name in params and state[name].dim() > 1:  # weights, not biases or norm statistics
                w = state[name].detach().double().movedim(d, 0).reshape(group.size, -1)
                score += w.pow(2).sum(1) / w.shape[1]
        heads = score.view(-1, group.unit).sum(1)  # one score per head (unit 1: per channel)
        order = torch.argsort(heads, descending=True, stable=True)
        perm = (order[:, None] * group.unit + torch.arange(group.unit)).reshape(-1)
        with torch.no_grad():
            for name, d in tied:
                state[name].copy_(state[name].index_select(d, perm))
