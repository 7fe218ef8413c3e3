"""The acoustic model: convolutional subsampling → bidirectional LSTM (or GRU) → per-frame character log-probabilities.

    log-mel (B, T, 80) ─► Conv2d 3×3, stride (s₁, 2) ─► ReLU ─► Conv2d 3×3, stride (s₂, 2) ─► ReLU
        ─► (B, T/(s₁s₂), C·20) ─► Linear ─► BiLSTM × L ─► Linear ─► log_softmax over 28 symbols (blank = 0)

With ``self_condition`` every BiLSTM layer but the last also sends its output through the output layer;
those posteriors are projected back (28 → 2H, one projection for all layers) and added to the next
layer's input (self-conditioned CTC), and training puts a CTC loss on them too (intermediate CTC).

The bidirectional layers run on padded batches without ``PackedSequence`` and are still exact for
every length in the batch (``BiRNN``): on CPU that lets PyTorch use oneDNN's fused LSTM kernels
(bf16 too), about twice as fast to train as a packed GRU of the same width.

Trained with ``torch.nn.CTCLoss``; ``services.asr.ctc`` is the readable reference of that loss.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
import torch
from torch import nn

from services.asr.features import HOP_LENGTH, N_MELS, SAMPLE_RATE
from services.asr.text import N_CLASSES


@dataclasses.dataclass
class ModelConfig:
    n_mels: int = N_MELS
    channels: int = 32
    """Channels of both subsampling convolutions."""
    subsample: int = 3
    """Time subsampling factor of the convolutions (2, 3 or 4): output frames last 10 ms × subsample."""
    proj: int = 256
    """Width of the projection between the convolutions and the recurrent layers."""
    hidden: int = 192
    """Recurrent hidden size per direction."""
    layers: int = 2
    """Stacked bidirectional recurrent layers."""
    cell: str = "lstm"
    """Recurrent cell: lstm or gru."""
    dropout: float = 0.15
    self_condition: bool = False
    """Self-conditioned CTC (Nozaki & Komatsu 2021): each recurrent layer's character posteriors but the last's,
    through the output layer, are projected back and added to the next layer's input."""
    n_classes: int = N_CLASSES

    @property
    def frame_s(self) -> float:
        """Seconds per output frame."""
        return HOP_LENGTH * self.subsample / SAMPLE_RATE

    def strides(self) -> tuple[int, int]:
        return {2: (2, 1), 3: (3, 1), 4: (2, 2)}[self.subsample]


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared by all its frames (Gal & Ghahramani 2016's variational
    dropout, AWD-LSTM's "locked" dropout) on (B, T, F): the usual regulariser around recurrent layers, and
    on CPU ~35× cheaper than ``nn.Dropout``'s per-element Bernoulli draws (8 % of a training step)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p)
        return x * mask.div_(1 - self.p)


class BiRNN(nn.Module):
    """Stacked bidirectional LSTM/GRU over a padded batch, exact for every sequence length.

    Each direction is a unidirectional RNN. The backward one reads every sequence reversed *within its own
    length*, so in both directions the padding comes after the frames that matter, and a causal RNN's
    output at a frame never depends on later frames: no ``PackedSequence`` is needed. Outputs at padded
    frames are unspecified.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"unknown recurrent cell {cell!r} (choose lstm or gru)")
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        sizes = [input_size] + [2 * hidden] * (layers - 1)
        self.fwd = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.bwd = nn.ModuleList(rnn(n, hidden, batch_first=True) for n in sizes)
        self.drop = LockedDropout(dropout)

    @staticmethod
    def reverse_index(lengths: torch.Tensor, T: int) -> torch.Tensor:
        """(B, T) source frame of each frame when each sequence is reversed within its length (an involution;
        padding stays in place)."""
        t = torch.arange(T, device=lengths.device)
        rev = lengths.to(t.device)[:, None] - 1 - t[None, :]
        return torch.where(rev >= 0, rev, t[None, :])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, between=None) -> list[torch.Tensor]:
        """(B, T, I) -> every layer's output (B, T, 2H), the last one last. ``between(i, y)``, when given, maps
        layer i's output to the next layer's input."""
        rev = self.reverse_index(lengths, x.shape[1])[:, :, None]
        outs = []
        for i, (f, b) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if i:
                x = self.drop(between(i - 1, x) if between is not None else x)
            y_f, _ = f(x)
            y_b, _ = b(x.gather(1, rev.expand(-1, -1, x.shape[2])))
            x = torch.cat([y_f, y_b.gather(1, rev.expand(-1, -1, y_b.shape[2]))], -1)
            outs.append(x)
        return outs


class CTCModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        s1, s2 = cfg.strides()
        self.conv = nn.Sequential(
            nn.Conv2d(1, cfg.channels, 3, stride=(s1, 2), padding=1), nn.BatchNorm2d(cfg.channels), nn.ReLU(),
            nn.Conv2d(cfg.channels, cfg.channels, 3, stride=(s2, 2), padding=1), nn.BatchNorm2d(cfg.channels),
            nn.ReLU(),
        )
        freq = (cfg.n_mels + 1) // 2
        freq = (freq + 1) // 2
        self.proj = nn.Sequential(nn.Linear(cfg.channels * freq, cfg.proj), nn.LayerNorm(cfg.proj),
                                  LockedDropout(cfg.dropout))
        self.rnn = BiRNN(cfg.cell, cfg.proj, cfg.hidden, cfg.layers, cfg.dropout)
        self.head = nn.Sequential(LockedDropout(cfg.dropout), nn.Linear(2 * cfg.hidden, cfg.n_classes))
        self.condition = nn.Linear(cfg.n_classes, 2 * cfg.hidden) if cfg.self_condition else None

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames after subsampling (each strided conv with kernel 3, padding 1: ⌊(n − 1)/s⌋ + 1)."""
        s1, s2 = self.cfg.strides()
        return torch.div(torch.div(lengths - 1, s1, rounding_mode="floor"), s2, rounding_mode="floor") + 1

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, intermediate: bool = False):
        """feats (B, T, F) normalised log-mel, lengths (B,) -> log-probs (B, T', V), lengths (B,).

        ``intermediate``: also return the lower recurrent layers' log-probs through the same output layer
        (intermediate CTC, Lee & Watanabe 2021): (log-probs, lengths, [per lower layer (B, T', V)])."""
        s1, _ = self.cfg.strides()
        h = self.conv[:3](feats.unsqueeze(1))  # first convolution (B, C, T/s₁, F/2)
        # zero its frames past each utterance's end, as the second convolution's padding would be alone:
        # an utterance's output must not depend on what else is in the batch
        n1 = torch.div(lengths - 1, s1, rounding_mode="floor") + 1
        h = h * (torch.arange(h.shape[2], device=h.device)[None, :] < n1.to(h.device)[:, None])[:, None, :, None]
        x = self.conv[3:](h)  # (B, C, T', F')
        B, C, T, Fq = x.shape
        x = self.proj(x.permute(0, 2, 1, 3).reshape(B, T, C * Fq))  # (B, T', proj)
        out_len = self.out_lengths(lengths).clamp(max=T)
        inter: list[torch.Tensor] = []

        def between(i: int, y: torch.Tensor) -> torch.Tensor:
            if self.condition is None and not intermediate:
                return y
            with torch.autocast(device_type=y.device.type, enabled=False):
                inter.append(self.head(y.float()).log_softmax(-1))  # layer i's posteriors, same output layer
            return y + self.condition(inter[-1].exp()) if self.condition is not None else y

        ys = self.rnn(x, out_len, between)  # each layer's (B, T', 2H)
        with torch.autocast(device_type=x.device.type, enabled=False):  # the output layer stays float32
            log_probs = self.head(ys[-1].float()).log_softmax(-1)
        return (log_probs, out_len, inter) if intermediate else (log_probs, out_len)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_state(model: CTCModel, extra: dict[str, Any] | None = None) -> bytes:
    """The serving artifact (model.pt): fp16 weights + config, a few MB."""
    state = {k: v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"config": dataclasses.asdict(model.cfg), "state_dict": state, **(extra or {})}, buf)
    return buf.getvalue()


def _birnn_key(key: str) -> str:
    """nn.GRU(bidirectional=True) parameter name -> BiRNN's (rnn.weight_ih_l1_reverse -> rnn.bwd.1.weight_ih_l0)."""
    import re

    m = re.fullmatch(r"rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?", key)
    return f"rnn.{'bwd' if m[3] else 'fwd'}.{m[2]}.{m[1]}_l0" if m else key


def load_model(data: bytes, device: str = "cpu") -> tuple[CTCModel, dict[str, Any]]:
    """model.pt bytes -> (float32 model in eval mode, the saved metadata)."""
    blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    cfg, state = dict(blob["config"]), blob["state_dict"]
    if "cell" not in cfg:  # a model.pt from before BiRNN: a packed nn.GRU, bidirectional
        cfg["cell"] = "gru"
        state = {_birnn_key(k): v for k, v in state.items()}
    model = CTCModel(ModelConfig(**cfg))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval(), {k: v for k, v in blob.items() if k != "state_dict"}


def pad_batch(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, F) -> zero-padded (B, T_max, F) and lengths (B,)."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    out = feats[0].new_zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    return out, lengths


@torch.inference_mode()
def predict(model: CTCModel, feats: list[np.ndarray | torch.Tensor], device: str = "cpu") -> list[np.ndarray]:
    """Raw log-mel features of a batch of utterances -> per-utterance log-probabilities (T'_i, V) as numpy."""
    from services.asr.features import normalize

    batch, lengths = pad_batch([torch.as_tensor(np.asarray(f, dtype=np.float32)) for f in feats])
    batch = normalize(batch.to(device), lengths.to(device))
    log_probs, out_len = model(batch, lengths.to(device))
    log_probs = log_probs.float().cpu().numpy()
    return [log_probs[i, : int(n)] for i, n in enumerate(out_len)]
