"""The two model families of the papers, and the baselines' classifiers. Every model maps a
normalised feature batch (B, F, T) to an embedding z (`embed`) and class logits (`forward`
returns both), because the loss families act on z (center, contrastive, triplet) as well as on
the logits.

The baselines (`linear`, `mlp`) are the classifiers the field puts on utterance-level functionals
(openSMILE's eGeMAPS / ComParE, ser_core.features.functionals: one frame per clip) and on a frozen
self-supervised encoder's layers (ser_core.features.ssl, through LayerWeightedSum); on a
spectrogram they read its mean over the clip's real frames. `linear` trained with cross-entropy
is multinomial logistic regression (weight decay as its L2 penalty)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def _conv_block(c_in: int, c_out: int, pool: tuple[int, int] | int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool, ceil_mode=True),
    )


def _frame_mask(lengths: Tensor | None, n_frames: int, full_frames: int) -> Tensor | None:
    """Boolean (B, n_frames) mask of valid frames after a time downsampling from full_frames."""
    if lengths is None:
        return None
    scaled = torch.ceil(lengths.float() * n_frames / full_frames).clamp(1, n_frames).long()
    return torch.arange(n_frames, device=lengths.device)[None, :] < scaled[:, None]


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over dim 1 of (B, T, D), counting only valid frames."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class CNNTransformer(nn.Module):
    """CNN + Transformer of "SER based on CNN-Transformer with different loss functions".

    Choices where the paper is ambiguous (it describes both parts but not how they join):
    - Two parallel branches over the same spectrogram, as in the public parallel
      CNN-Transformer SER design the paper's numbers match: the CNN branch (4 blocks,
      kernel 3, stride 1, padding 1, BN, ReLU, max-pool 2, 2, 2, 4; channels 16, 32, 64, 64)
      averaged over its remaining frequency x time grid, and the Transformer branch behind a
      [2, 4] max-pool of the input (frequency x time).
    - The pooled frequency axis is projected linearly to d_model=64, so any frontend (64 Mel
      bins or 321 STFT bins) feeds the same 4-layer encoder (4 heads, feed-forward 512, GELU);
      the paper's d_model=64 equals 128 Mel bins pooled by 2, which needs no projection.
    - z is the concatenation of both branch outputs (64 + 64 = 128) and a linear layer gives
      the logits. Dropout 0.1 inside the encoder and before the classifier.
    """

    def __init__(
        self,
        n_features: int,
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64, 64),
        pools: Sequence[int] = (2, 2, 2, 4),
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 4,
        ff_dim: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(channels) != len(pools):
            raise ValueError("channels and pools must have the same length")
        blocks, c_in = [], 1
        for c_out, pool in zip(channels, pools):
            blocks.append(_conv_block(c_in, c_out, pool))
            c_in = c_out
        self.cnn = nn.Sequential(*blocks)
        self.time_downsample = 1
        for p in pools:
            self.time_downsample *= p
        self.pre_pool = nn.MaxPool2d((2, 4), stride=(2, 4), ceil_mode=True)
        self.project = nn.Linear((n_features + 1) // 2, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, ff_dim, dropout=dropout, activation="gelu", batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.embed_dim = c_in + d_model
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        full_frames = x.shape[-1]
        c = self.cnn(x.unsqueeze(1).contiguous(memory_format=torch.channels_last))  # (B, C, F', T')
        cnn_mask = _frame_mask(lengths, c.shape[-1], full_frames)
        cnn_z = _masked_mean(c.mean(dim=2).transpose(1, 2), cnn_mask)
        t = self.pre_pool(x.unsqueeze(1)).squeeze(1).transpose(1, 2)  # (B, T/4, F/2)
        t = self.project(t)
        t_mask = _frame_mask(lengths, t.shape[1], full_frames)
        t = self.transformer(t, src_key_padding_mask=None if t_mask is None else ~t_mask)
        return torch.cat([cnn_z, _masked_mean(t, t_mask)], dim=1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self.embed(x, lengths)
        return self.classifier(self.dropout(z)), z


class CNNBiRNN(nn.Module):
    """CNN + bidirectional recurrent model of Dai et al. (center loss for SER).

    The CNN pools frequency hard and time gently (x2 per block), so the recurrent layer sees
    a long sequence; a packed bidirectional LSTM/GRU runs over each clip's true length only,
    and z is the masked mean of its outputs projected to `embed_dim` — a fixed embedding from
    variable-length input, which is what center loss acts on.
    """

    def __init__(
        self,
        n_features: int,
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64),
        rnn: str = "lstm",
        rnn_hidden: int = 128,
        rnn_layers: int = 1,
        embed_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        blocks, c_in, f = [], 1, n_features
        for c_out in channels:
            blocks.append(_conv_block(c_in, c_out, (4, 2) if f >= 4 else (1, 2)))
            f = -(-f // 4) if f >= 4 else f
            c_in = c_out
        self.cnn = nn.Sequential(*blocks)
        self.time_downsample = 2 ** len(channels)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.rnn = rnn_cls(
            c_in * f, rnn_hidden, num_layers=rnn_layers, batch_first=True, bidirectional=True,
            dropout=dropout if rnn_layers > 1 else 0.0,
        )
        self.project = nn.Sequential(nn.Linear(2 * rnn_hidden, embed_dim), nn.ReLU())
        self.embed_dim = embed_dim
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_classes)

    def embed(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        full_frames = x.shape[-1]
        c = self.cnn(x.unsqueeze(1).contiguous(memory_format=torch.channels_last))  # (B, C, F', T')
        seq = c.flatten(1, 2).transpose(1, 2)  # (B, T', C*F')
        mask = _frame_mask(lengths, seq.shape[1], full_frames)
        if mask is not None:
            steps = mask.sum(dim=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(seq, steps, batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        else:
            out, _ = self.rnn(seq)
        return self.project(_masked_mean(out, mask))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self.embed(x, lengths)
        return self.classifier(self.dropout(z)), z


def _utterance_vector(x: Tensor, lengths: Tensor | None) -> Tensor:
    """(B, F, T) -> (B, F): the one frame of functionals, or a spectrogram's mean over real frames."""
    if x.shape[-1] == 1:
        return x[:, :, 0]
    return _masked_mean(x.transpose(1, 2), _frame_mask(lengths, x.shape[-1], x.shape[-1]))


class LayerWeightedSum(nn.Module):
    """SUPERB's learnable softmax-weighted sum of an encoder's hidden layers (Yang et al.,
    Interspeech 2021): (B, L * D) layer-major -> (B, D). The weights start equal, so training starts
    from the layers' mean. Over per-clip layer means this equals the weighted sum of the frames'
    states, mean-pooled (ser_core.features.ssl)."""

    def __init__(self, layers: int, dim: int) -> None:
        super().__init__()
        self.layers, self.dim = layers, dim
        self.logits = nn.Parameter(torch.zeros(layers))

    def weights(self) -> Tensor:
        """The layers' weights: positive, summing to one."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, x: Tensor) -> Tensor:
        stacked = x.reshape(x.shape[0], self.layers, self.dim)
        return torch.einsum("bld,l->bd", stacked, self.weights().to(x.dtype))


def _utterance_input(n_features: int, layers: int) -> tuple[nn.Module, int]:
    """What an utterance classifier puts before its first layer, and that layer's input size:
    the weighted sum of an encoder's `layers` stacked hidden states, or nothing."""
    if layers <= 1:
        return nn.Identity(), n_features
    if n_features % layers:
        raise ValueError(f"{n_features} features do not split into {layers} layers")
    return LayerWeightedSum(layers, n_features // layers), n_features // layers


class LinearClassifier(nn.Module):
    """One linear layer on the utterance vector: with softmax cross-entropy, multinomial logistic
    regression, the classifier of the functionals baselines in docs/baselines.md.

    A single layer has no hidden representation, so its embedding z is its logits, the only
    thing it learns: the embedding terms of center loss, SupCon and triplet then act on the class
    scores (and still shape the weights). `dropout` drops input features during training (0 = the
    plain logistic regression). `layers` > 1: the input is an encoder's stacked hidden states,
    summed with learnt weights first (LayerWeightedSum)."""

    def __init__(self, n_features: int, num_classes: int, dropout: float = 0.0, layers: int = 1) -> None:
        super().__init__()
        self.layer_sum, width = _utterance_input(n_features, layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)
        self.embed_dim = num_classes

    def embed(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(self.layer_sum(_utterance_vector(x, lengths))))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self.embed(x, lengths)
        return z, z


class MLPClassifier(nn.Module):
    """A small MLP on the utterance vector: input dropout, one hidden ReLU layer of `hidden`
    units (the embedding z the loss families act on), dropout, a linear classifier. `layers` > 1:
    an encoder's stacked hidden states, summed with learnt weights first (SUPERB's downstream head)."""

    def __init__(self, n_features: int, num_classes: int, hidden: int = 128, dropout: float = 0.1,
                 layers: int = 1) -> None:
        super().__init__()
        self.layer_sum, width = _utterance_input(n_features, layers)
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)
        self.embed_dim = hidden

    def embed(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.hidden(self.layer_sum(_utterance_vector(x, lengths)))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self.embed(x, lengths)
        return self.classifier(self.dropout(z)), z


class FusedClassifier(nn.Module):
    """A spectrogram model's pooled embedding joined with the clip's utterance functionals
    (openSMILE's eGeMAPS or ComParE, standardised like the functionals frontend): the
    functionals pass input dropout, a linear layer of `hidden` units and a ReLU; z is the
    concatenation of both embeddings (what the loss families act on) and one linear layer
    gives the logits. Intermediate fusion of a learnt and a hand-crafted representation, the
    usual way of adding the functionals baseline's evidence to a deep SER model (the two
    branches train jointly, end to end)."""

    def __init__(self, deep: nn.Module, n_functionals: int, num_classes: int, hidden: int = 128,
                 dropout: float = 0.1) -> None:
        super().__init__()
        # the deep model's own head is never used: its embedding is joined before the one classifier
        del deep.classifier, deep.dropout
        self.deep, self.n_functionals = deep, n_functionals
        self.functionals = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_functionals, hidden), nn.ReLU())
        self.embed_dim = deep.embed_dim + hidden
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embed_dim, num_classes)

    def embed(self, x: Tensor, lengths: Tensor | None = None, functionals: Tensor | None = None) -> Tensor:
        if functionals is None:
            raise ValueError("FusedClassifier needs each clip's functionals beside its spectrogram")
        return torch.cat([self.deep.embed(x, lengths), self.functionals(functionals.flatten(1))], dim=1)

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                functionals: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self.embed(x, lengths, functionals)
        return self.classifier(self.dropout(z)), z


MODELS: dict[str, type[nn.Module]] = {"cnn_transformer": CNNTransformer, "cnn_birnn": CNNBiRNN,
                                      "linear": LinearClassifier, "mlp": MLPClassifier}
# The models that read one vector per clip and so take an utterance frontend (functionals, ssl).
UTTERANCE_MODELS = ("linear", "mlp")
