"""Parameter and MAC counts against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.compress import count_macs, count_params


def test_linear_and_conv_macs_match_closed_forms():
    assert count_macs(nn.Linear(10, 20), torch.randn(5, 10)) == 10 * 20  # per sample: batch is cut to 1
    conv = nn.Conv1d(4, 8, 3)  # output length 38
    assert count_macs(conv, torch.randn(2, 4, 40)) == 8 * 4 * 3 * 38
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(dw, torch.randn(1, 8, 6, 6)) == 8 * 9 * 36


@pytest.mark.parametrize("cell,gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_macs_use_the_closed_form(cell, gates):
    # on CPU the fused LSTM kernel is invisible to the FLOP counter; every cell type must still count
    rnn = getattr(nn, cell)(8, 16, num_layers=2, bidirectional=True, batch_first=True)
    expected = gates * 16 * (8 + 16) * 40 * 2 + gates * 16 * (32 + 16) * 40 * 2
    assert count_macs(rnn, torch.randn(3, 40, 8)) == expected


def test_recurrent_layer_inside_a_model_is_counted_once():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(1, 16, batch_first=True)
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    assert count_macs(M(), torch.randn(2, 40, 1)) == 3 * 16 * (1 + 16) * 40 + 16 * 10


def test_shared_parameters_are_counted_once():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_params(model) == 20


def test_model_mode_is_restored():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    count_macs(model, torch.randn(1, 4))
    assert model.training
