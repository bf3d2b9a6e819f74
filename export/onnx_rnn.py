"""Recurrent layers in the dynamo ONNX exporter: keep the time dim dynamic (used by :func:`to_onnx`).

``nn.LSTM``/``nn.GRU`` keep a dynamic time dim (exported as ONNX ``LSTM``/``GRU`` through while-loop
decompositions that the exporter registers around each capture). torch 2.13 swaps those
decompositions in via ``OpOverload.py_kernels`` without clearing the op's dispatch cache, so a second
export in the same process (or one after a ``FlopCounterMode`` pass) reused a stale kernel and pinned
the time dim or failed. :func:`clear_rnn_dispatch_cache` clears that cache before and after each export,
which makes repeated exports work. ``nn.RNN`` (tanh/relu) has no such decomposition in torch, so the
exporter would unroll it and pin the time dim; :func:`plain_rnn_export` adds one (and a translation to
the ONNX ``RNN`` op), and where this torch lacks the hooks it needs, a model with ``nn.RNN`` is refused
with a clear message unless every dim is static (:func:`refuse_unrolled_rnn`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.runtime.errors import ExportError

__all__ = ["rnn_hint", "refuse_unrolled_rnn", "plain_rnn_export", "clear_rnn_dispatch_cache"]


def rnn_hint(module: nn.Module) -> str | None:
    """Why an ``nn.RNN`` in ``module`` would pin dims when exported, or None when it has none."""
    names = [n or type(module).__name__ for n, m in module.named_modules() if isinstance(m, nn.RNN)]
    if not names:
        return None
    return (f"the model contains nn.RNN ({', '.join(names)}), which torch.onnx unrolls step by step: "
            "its time dim and output batch dim become fixed. Use nn.GRU or nn.LSTM, or export with every "
            "dim fixed (dynamic_dims={0: None, 1: None})")


def refuse_unrolled_rnn(module: nn.Module, dims: Mapping[int, str]) -> None:
    """Raise ExportError when ``module`` has an ``nn.RNN`` that this torch can only export unrolled."""
    hint = rnn_hint(module)
    if hint is not None and dims and plain_rnn_export() is None:
        raise ExportError(f"cannot export {type(module).__name__} with dynamic dims {dims}: {hint}")


def plain_rnn_export():
    """``(context manager, custom translation table)`` exporting ``nn.RNN`` as ONNX ``RNN`` ops with a
    dynamic time dim, or None where this torch/onnxscript lacks the hooks.

    Capture: torch.export traces ``aten.rnn_tanh``/``rnn_relu`` through their Python decomposition, which
    unrolls time. While tracing, a ``while_loop`` version stands in for it, the way torch registers one
    for LSTM/GRU (``torch.export._patches``), so the op stays whole in the graph. Translation: onnxscript
    has no rule for the whole op, so one ONNX ``RNN`` node per layer is emitted (both directions in one).
    """
    try:
        from onnxscript import opset18 as op
        from torch._decomp.decompositions import _rnn_helper, gather_params
        from torch._higher_order_ops.while_loop import while_loop
        from torch.export._patches import _clone_tensors_that_alias, _register_rnn_while_loop_decomposition
    except ImportError:
        return None

    def capture(act):
        def one_layer(inp, hidden, params, has_biases, reverse=False):
            pre = F.linear(inp, params[0], params[2] if has_biases else None)  # (T, B, H), all steps at once
            pre = pre.flip(0) if reverse else pre
            w_hh, b_hh = _clone_tensors_that_alias((params[1], params[3] if has_biases else None))
            h0 = hidden.unsqueeze(0)
            out0 = torch.empty(pre.size(0), *h0.shape[1:], dtype=h0.dtype, device=h0.device)

            def body(idx, out, h):
                i = idx.item()
                torch._check_is_size(i, max=pre.size(0) - 1)
                h = act(pre[i] + F.linear(h, w_hh, b_hh))
                out = out.clone()
                out[i] = h.squeeze(0)
                return idx + 1, out, h

            _, out, h = while_loop(lambda i, o, h: i < pre.size(0), body, [torch.tensor(0), out0, h0])
            return (out.flip(0) if reverse else out), h.squeeze(0)

        def impl(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
            out, hs = _rnn_helper(x, list(hx.unbind(0)), gather_params(params, has_biases, False), has_biases,
                                  num_layers, dropout, train, bidirectional, batch_first, one_layer)
            return out, torch.stack(hs, 0)

        return impl

    def translate(act):
        def rnn(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
            dirs, per = (2 if bidirectional else 1), (4 if has_biases else 2)
            x = op.Transpose(x, perm=[1, 0, 2]) if batch_first else x  # (T, B, F)
            stack = lambda vs: op.Concat(*vs, axis=0) if len(vs) > 1 else vs[0]  # noqa: E731
            finals = []
            for layer in range(num_layers):
                first = [(layer * dirs + d) * per for d in range(dirs)]
                w = stack([op.Unsqueeze(params[i], [0]) for i in first])  # (dirs, H, F)
                r = stack([op.Unsqueeze(params[i + 1], [0]) for i in first])  # (dirs, H, H)
                b = stack([op.Unsqueeze(op.Concat(params[i + 2], params[i + 3], axis=0), [0]) for i in first]
                          ) if has_biases else None  # (dirs, 2H)
                y, y_h = op.RNN(x, w, r, b, None, op.Slice(hx, [layer * dirs], [(layer + 1) * dirs], [0]),
                                activations=[act] * dirs, hidden_size=int(params[1].shape[1]),
                                direction="bidirectional" if dirs == 2 else "forward")
                x = op.Reshape(op.Transpose(y, perm=[0, 2, 1, 3]), [0, 0, -1])  # (T, dirs, B, H) -> (T, B, dirs*H)
                finals.append(y_h)
            return (op.Transpose(x, perm=[1, 0, 2]) if batch_first else x), stack(finals)

        return rnn

    ops = {torch.ops.aten.rnn_tanh.input: (torch.tanh, "Tanh"), torch.ops.aten.rnn_relu.input: (torch.relu, "Relu")}

    @contextlib.contextmanager
    def capturing():
        with contextlib.ExitStack() as stack:
            for aten_op, (fn, _) in ops.items():
                stack.enter_context(_register_rnn_while_loop_decomposition(aten_op, capture(fn)))
            yield

    return capturing(), {aten_op: translate(name) for aten_op, (_, name) in ops.items()}


def clear_rnn_dispatch_cache() -> None:
    """Drop the cached kernels of the recurrent ops (stale ones pin the time dim of a later export)."""
    for op_name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        packet = getattr(torch.ops.aten, op_name, None)
        for overload in (packet.overloads() if packet is not None else ()):
            cache = getattr(getattr(packet, overload), "_dispatch_cache", None)
            if isinstance(cache, dict):
                cache.clear()
