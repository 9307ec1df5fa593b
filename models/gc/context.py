"""Quantization of W to its five centres, and the channel-autoregressive context model that codes it."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .symbols import CENTRES, NUM_SYMBOLS, ZERO_SYMBOL  # noqa: F401 (re-exported)


def quantize(w: torch.Tensor, sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_hat, symbols): nearest centre in the forward pass, soft assignment's gradient backward."""
    centres = torch.tensor(CENTRES, dtype=w.dtype, device=w.device)
    distances = (w.unsqueeze(-1) - centres) ** 2
    soft = (torch.softmax(-sigma * distances, dim=-1) * centres).sum(-1)
    symbols = torch.argmin(distances, dim=-1)
    return soft + (centres[symbols] - soft).detach(), symbols


class ChannelContext(nn.Module):
    """p(W[c, i] | W[<c], the checkerboard half of W[c] decoded before i), as base-2 logits.

    Input planes: C symbol planes (centre values, 0 where not yet known), C known-masks, the
    one-hot target channel, and the mask of the current checkerboard phase. Only convolutions and
    ReLUs, so it runs in exact fixed point at coding time.
    """

    def __init__(self, bottleneck: int, width: int):
        super().__init__()
        self.bottleneck = bottleneck
        self.net = nn.Sequential(
            nn.Conv2d(3 * bottleneck + 1, width, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(width, width, 1), nn.ReLU(),
            nn.Conv2d(width, NUM_SYMBOLS, 1))

    @staticmethod
    def phase_mask(height: int, width: int, phase: int, device=None) -> torch.Tensor:
        rows = torch.arange(height, device=device)[:, None]
        cols = torch.arange(width, device=device)[None, :]
        return (((rows + cols) % 2) == phase).float()

    def inputs(self, w_hat: torch.Tensor, channel: int, phase: int) -> torch.Tensor:
        """What the decoder knows before coding (channel, phase), for a batch of w_hat (B, C, h, w)."""
        batch, channels, height, width = w_hat.shape
        anchors = self.phase_mask(height, width, 0, w_hat.device)
        known = torch.zeros(channels, height, width, device=w_hat.device)
        known[:channel] = 1
        if phase == 1:
            known[channel] = anchors
        target = torch.zeros(channels, device=w_hat.device)
        target[channel] = 1
        planes = [w_hat * known, known.expand(batch, -1, -1, -1),
                  target[None, :, None, None].expand(batch, -1, height, width),
                  self.phase_mask(height, width, phase, w_hat.device).expand(batch, 1, -1, -1)]
        return torch.cat(planes, dim=1)

    def forward(self, w_hat: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
        """Logits for every (channel, phase) step: [(channel, phase, logits (B, 5, h, w))]."""
        return [(c, p, self.net(self.inputs(w_hat, c, p))) for c in range(self.bottleneck) for p in (0, 1)]

    def bits(self, w_hat: torch.Tensor, symbols: torch.Tensor, preserve: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of the symbols in bits, per sample (B,); only where preserve (B, 1, h, w)
        is 1 when given (the rest is not coded)."""
        total = torch.zeros(w_hat.shape[0], device=w_hat.device)
        height, width = w_hat.shape[2:]
        for channel, phase, logits in self.forward(w_hat):
            log_probs = torch.log_softmax(logits.float() * np.log(2), dim=1) / np.log(2)
            picked = log_probs.gather(1, symbols[:, channel : channel + 1]).squeeze(1)
            mask = self.phase_mask(height, width, phase, w_hat.device)
            if preserve is not None:
                mask = mask * preserve[:, 0]
            total = total - (picked * mask).sum(dim=(1, 2))
        return total
