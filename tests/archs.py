"""The architectures of the support matrix, tiny enough that one method x model cell runs in seconds.

One table, :data:`MODELS`: name -> :class:`Case` (how to build the model with random weights, how to make
its inputs, the ``output=`` selector it needs). Third-party models come from ``transformers``
configurations (random init, nothing downloaded; imported lazily, so this module imports without it);
the rest are stock ``torch.nn`` layers and slimkit's own zoo. Tests build a case with :func:`build`
and its data with :func:`loaders`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.compress import zoo
from slimkit.compress.outputs import pick

CLASSES = 3
VOCAB = 64
SEQ = 8
IMAGE = (3, 16, 16)


@dataclass(frozen=True)
class Case:
    """One architecture of the matrix.

    Attributes:
        make: builds the model (random weights; seed set by :func:`build`).
        input: ``"tokens"`` (int64 ``(B, SEQ)`` ids below ``VOCAB``), ``"image"`` (``(B, *IMAGE)``), or a
            float shape without the batch, e.g. ``(SEQ, 4)``.
        output: the ``output=`` selector the model needs (None: it returns one tensor).
        classes: number of classes of the synthetic task.
        source: ``"transformers"``, ``"torch.nn"`` or ``"zoo"``.
        recurrent: holds nn.RNN/GRU/LSTM layers.
        sequence_dim: the input axis that may vary in length, or None.
    """

    make: Callable[[], nn.Module]
    input: str | tuple[int, ...]
    output: Any = None
    classes: int = CLASSES
    source: str = "torch.nn"
    recurrent: bool = False
    sequence_dim: int | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


# -- transformers (lazy) ------------------------------------------------------------------------------------
def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, num_labels=CLASSES, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0))


def _distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    return DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32,
        num_labels=CLASSES, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0))


def _gpt2_config(**kw):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=VOCAB - 1,
                      eos_token_id=VOCAB - 1, **kw)


def _gpt2_cls():
    from transformers import GPT2ForSequenceClassification

    return GPT2ForSequenceClassification(_gpt2_config(num_labels=CLASSES))


def _gpt2_lm():
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(_gpt2_config())


def next_token_logits(out) -> torch.Tensor:
    """The LM head's logits at the last position: ``(B, T, vocab) -> (B, vocab)`` (next-token prediction)."""
    return out.logits[:, -1]


def _vit():
    from transformers import ViTConfig, ViTForImageClassification

    return ViTForImageClassification(ViTConfig(
        image_size=IMAGE[1], patch_size=4, num_channels=IMAGE[0], hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, num_labels=CLASSES, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0))


def _resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    return ResNetForImageClassification(ResNetConfig(
        num_channels=IMAGE[0], embedding_size=16, hidden_sizes=[16, 32], depths=[2, 1], layer_type="basic",
        num_labels=CLASSES))


def _convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    return ConvNextForImageClassification(ConvNextConfig(
        num_channels=IMAGE[0], patch_size=2, num_stages=2, hidden_sizes=[16, 32], depths=[2, 1],
        num_labels=CLASSES))


def _mobilenet_v2():
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return MobileNetV2ForImageClassification(MobileNetV2Config(
        num_channels=IMAGE[0], image_size=IMAGE[1], depth_multiplier=0.25, num_labels=CLASSES,
        classifier_dropout_prob=0.0))


# -- torch.nn ---------------------------------------------------------------------------------------------------
class EncoderClassifier(nn.Module):
    """``nn.TransformerEncoder`` over ``(B, T, F)`` features: Linear embedding, encoder, mean, Linear head."""

    def __init__(self, batch_first: bool, *, features: int = 4, d_model: int = 32, layers: int = 2,
                 norm_first: bool = False):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(features, d_model)
        layer = nn.TransformerEncoderLayer(d_model, 4, 64, dropout=0.0, batch_first=batch_first,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)  # (B, T, D)
        if not self.batch_first:
            h = h.transpose(0, 1)  # (T, B, D)
        h = self.encoder(h)
        return self.head(h.mean(dim=1 if self.batch_first else 0))


class RecurrentClassifier(nn.Module):
    """A multi-layer (optionally bidirectional) LSTM/GRU over ``(B, T, F)``, mean over time, Linear head."""

    def __init__(self, cell: str, *, features: int = 4, hidden: int = 16, layers: int = 2,
                 bidirectional: bool = False):
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](features, hidden, num_layers=layers, batch_first=True,
                                                            bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H * directions)
        return self.head(out.mean(dim=1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class DepthwiseSE(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, squeeze-excitation, 1x1 project, residual add."""

    def __init__(self, channels: int, expand: int):
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
                                       nn.BatchNorm2d(hidden), nn.ReLU6())
        self.se = SqueezeExcite(hidden, max(4, hidden // 4))
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.depthwise(self.expand(x))))


class DepthwiseCNN(nn.Module):
    """A 2-D CNN of depthwise-separable inverted residual blocks with squeeze-excitation."""

    def __init__(self, channels: int = 16, blocks: int = 2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(IMAGE[0], channels, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[DepthwiseSE(channels, 2) for _ in range(blocks)])
        self.head = nn.Linear(channels, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


MODELS: dict[str, Case] = {
    "bert": Case(_bert, "tokens", "logits", source="transformers", sequence_dim=1),
    "distilbert": Case(_distilbert, "tokens", "logits", source="transformers", sequence_dim=1),
    "gpt2": Case(_gpt2_cls, "tokens", "logits", source="transformers", sequence_dim=1),
    "gpt2_lm": Case(_gpt2_lm, "tokens", next_token_logits, classes=VOCAB, source="transformers", sequence_dim=1),
    "vit": Case(_vit, "image", "logits", source="transformers"),
    "resnet": Case(_resnet, "image", "logits", source="transformers"),
    "convnext": Case(_convnext, "image", "logits", source="transformers"),
    "mobilenet_v2": Case(_mobilenet_v2, "image", "logits", source="transformers"),
    "encoder_bf": Case(lambda: EncoderClassifier(True), (SEQ, 4), sequence_dim=1),
    "encoder_sf": Case(lambda: EncoderClassifier(False), (SEQ, 4), sequence_dim=1),
    "lstm_bi": Case(lambda: RecurrentClassifier("lstm", bidirectional=True), (SEQ, 4), recurrent=True,
                    sequence_dim=1),
    "gru_2l": Case(lambda: RecurrentClassifier("gru"), (SEQ, 4), recurrent=True, sequence_dim=1),
    "dw_se_cnn": Case(DepthwiseCNN, "image"),
    "zoo_rescnn": Case(lambda: zoo.build("rescnn", in_channels=1, num_classes=CLASSES, channels=[16, 32],
                                         depths=[1, 1]), (1, 40), source="zoo"),
    "zoo_mlp": Case(lambda: zoo.build("mlp", in_features=16, num_classes=CLASSES, hidden=[32, 32]), (16,),
                    source="zoo"),
    "zoo_gru": Case(lambda: zoo.build("gru", in_features=4, num_classes=CLASSES, hidden_size=16), (SEQ, 4),
                    source="zoo", recurrent=True, sequence_dim=1),
    "zoo_lstm": Case(lambda: zoo.build("lstm", in_features=4, num_classes=CLASSES, hidden_size=16, num_layers=2,
                                       bidirectional=True), (SEQ, 4), source="zoo", recurrent=True, sequence_dim=1),
    "zoo_transformer": Case(lambda: zoo.build("transformer", in_features=4, num_classes=CLASSES, seq_len=SEQ,
                                              d_model=32, num_heads=4, num_layers=2, ffn_dim=64), (SEQ, 4),
                            source="zoo"),  # a learned position embedding of SEQ rows: one length only
}


def build(name: str, seed: int = 0) -> nn.Module:
    """The model of case ``name`` with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return MODELS[name].make().eval()


def inputs(name: str, n: int, *, seed: int = 0, length: int | None = None) -> torch.Tensor:
    """``n`` random inputs of case ``name`` (``length`` overrides the sequence length)."""
    case, g = MODELS[name], torch.Generator().manual_seed(seed)
    if case.input == "tokens":
        return torch.randint(1, VOCAB, (n, length or SEQ), generator=g)
    shape = IMAGE if case.input == "image" else case.input
    if length is not None and case.sequence_dim is not None:
        shape = tuple(length if i + 1 == case.sequence_dim else s for i, s in enumerate(shape))
    return torch.randn(n, *shape, generator=g)


def loaders(name: str, *, n: int = 32, batch_size: int = 16, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders of a synthetic task for case ``name``: random inputs labelled by the model of
    :func:`build` itself (its own predictions, so its accuracy is 1 and a student's says how close it is)."""
    case = MODELS[name]
    model = build(name)
    out = []
    for k in range(2):
        x = inputs(name, n, seed=seed + k)
        with torch.no_grad():
            y = pick(model(x), case.output).argmax(-1)
        out.append(DataLoader(TensorDataset(x, y), batch_size=batch_size))
    return out[0], out[1]
