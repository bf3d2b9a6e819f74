"""Parameters and multiply-accumulates (MACs) of arbitrary models.

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` (matmul, conv, attention
kernels; one MAC = two FLOPs). Recurrent layers are the exception: on CPU ``nn.LSTM`` runs as one fused
op the counter does not see, so every ``nn.RNNBase`` is counted from its closed form instead
(gates x (input + hidden) x hidden per step, layer and direction), replacing whatever the counter saw
inside it. Counts are per sample: the example input is cut to batch size 1.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .modules import hooks

__all__ = ["count_params", "count_macs"]

RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}  # gate blocks per nn.RNNBase mode


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _rnn_macs(rnn: nn.RNNBase, x: torch.Tensor) -> int:
    # (B, T, F) if batch_first, else (T, B, F); unbatched input is (T, F)
    steps = x.shape[1] if (rnn.batch_first and x.dim() == 3) else x.shape[0]
    gates = RNN_GATES[rnn.mode]
    dirs = 2 if rnn.bidirectional else 1
    h = rnn.hidden_size
    out = rnn.proj_size or h
    macs = 0
    for layer in range(rnn.num_layers):
        inp = rnn.input_size if layer == 0 else out * dirs
        per_step = gates * h * (inp + out) + (h * rnn.proj_size if rnn.proj_size else 0)
        macs += per_step * steps * dirs
    return macs


@torch.no_grad()
def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """MACs of one forward pass on one sample of ``example_input`` (its first row)."""
    x = example_input[:1]
    rnn_inputs: dict[str, tuple[nn.RNNBase, torch.Tensor]] = {}
    root = type(model).__name__
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.RNNBase):
            def hook(mod, args, _name=f"{root}.{name}" if name else root):
                rnn_inputs[_name] = (mod, args[0])
            handles.append(m.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with hooks(handles), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    flops = counter.get_total_flops()
    by_module = counter.get_flop_counts()
    macs = flops // 2
    for name, (rnn, inp) in rnn_inputs.items():
        macs -= sum(by_module.get(name, {}).values()) // 2
        macs += _rnn_macs(rnn, inp)
    return int(macs)
