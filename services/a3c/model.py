"""The branched actor-critic network: a shared trunk, a policy head and a value head.

- vector observations: an MLP trunk;
- Atari frames (4, 84, 84): the network of Mnih et al. 2016 —
  conv 16·8×8/4 → conv 32·4×4/2 → FC 256 (≈0.68 M parameters with the heads);
- optionally an LSTM cell (256) between trunk and heads ("A3C LSTM").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor] | None


def _init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int = 128, lstm: bool = False):
        super().__init__()
        self.obs_shape, self.n_actions, self.lstm_size = tuple(obs_shape), n_actions, 0
        relu = nn.init.calculate_gain("relu")
        if len(obs_shape) == 3:  # (C, 84, 84) uint8 frames
            c = obs_shape[0]
            self.trunk = nn.Sequential(
                _init(nn.Conv2d(c, 16, 8, stride=4), relu), nn.ReLU(),   # (B, 16, 20, 20)
                _init(nn.Conv2d(16, 32, 4, stride=2), relu), nn.ReLU(),  # (B, 32, 9, 9)
                nn.Flatten(),                                            # (B, 2592)
                _init(nn.Linear(32 * 9 * 9, 256), relu), nn.ReLU(),      # (B, 256)
            )
            feat = 256
            self.scale = 1.0 / 255.0
        else:
            d = int(np.prod(obs_shape))
            self.trunk = nn.Sequential(
                nn.Flatten(),
                _init(nn.Linear(d, hidden), np.sqrt(2)), nn.Tanh(),
                _init(nn.Linear(hidden, hidden), np.sqrt(2)), nn.Tanh(),
            )
            feat = hidden
            self.scale = 1.0
        if lstm:
            self.lstm = nn.LSTMCell(feat, 256)
            self.lstm_size = feat = 256
        else:
            self.lstm = None
        self.policy = _init(nn.Linear(feat, n_actions), 0.01)
        self.value = _init(nn.Linear(feat, 1), 1.0)

    def initial_state(self, batch: int) -> State:
        if self.lstm is None:
            return None
        z = torch.zeros(batch, self.lstm_size)
        return (z, z.clone())

    def _prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 frames (B, C, H, W) → float in [0, 1], in channels-last memory layout: oneDNN's
        convolution backward on CPU is 2× faster on it (bench/README.md, "A3C throughput"), and
        the parameters and gradients keep their ordinary layout. Vector observations pass as they are."""
        if obs.dim() == 4:
            obs = obs.contiguous(memory_format=torch.channels_last)
        return obs.float() * self.scale

    def forward(self, obs: torch.Tensor, state: State = None) -> tuple[torch.Tensor, torch.Tensor, State]:
        """One step: obs (B, *obs_shape) → logits (B, A), value (B,), next state."""
        x = self.trunk(self._prepare(obs))  # (B, F)
        if self.lstm is not None:
            h, c = self.lstm(x, state)
            state, x = (h, c), h
        return self.policy(x), self.value(x).squeeze(-1), state

    def unroll(
        self, obs: torch.Tensor, state: State, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A rollout: obs (T, N, *obs_shape), starts (T, N) = 1 where an episode begins
        (the LSTM state is zeroed there) → logits (T, N, A), values (T, N)."""
        T, N = obs.shape[:2]
        if self.lstm is None:
            logits, values, _ = self(obs.reshape(T * N, *obs.shape[2:]))  # (T*N, A), (T*N,)
            return logits.reshape(T, N, -1), values.reshape(T, N)
        feats = self.trunk(self._prepare(obs.reshape(T * N, *obs.shape[2:]))).reshape(T, N, -1)
        h, c = state
        outs = []
        for t in range(T):
            keep = (1.0 - starts[t].float()).unsqueeze(-1)  # (N, 1)
            h, c = self.lstm(feats[t], (h * keep, c * keep))
            outs.append(h)
        x = torch.stack(outs)  # (T, N, 256)
        return self.policy(x), self.value(x).squeeze(-1)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def get_flat(model: nn.Module) -> np.ndarray:
    """All parameters as one float32 vector (ships zero-copy through Ray's object store)."""
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    return flat.cpu().numpy().astype(np.float32, copy=False)


def set_flat(model: nn.Module, flat: np.ndarray) -> None:
    device = next(model.parameters()).device
    vec = torch.from_numpy(np.array(flat, dtype=np.float32)).to(device)  # copy: Ray arrays are read-only
    torch.nn.utils.vector_to_parameters(vec, model.parameters())


def flat_grad(model: nn.Module) -> np.ndarray:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).cpu().numpy()


def set_flat_grad(model: nn.Module, flat: np.ndarray) -> None:
    device = next(model.parameters()).device
    g = torch.from_numpy(np.array(flat, dtype=np.float32)).to(device)  # (P,)
    i = 0
    for p in model.parameters():
        n = p.numel()
        p.grad = g[i : i + n].view_as(p)
        i += n
