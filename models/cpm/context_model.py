"""The 3D-CNN context model: masked convolutions over (channel, row, column) of the symbols."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .network import CpmConfig


import torch
import torch.nn.functional as F
from torch import nn

from .layout import INPUT_PLANES  # noqa: F401 (re-exported)
from .layout import context_masks as mask_arrays
from .layout import quality_values as quality_value_array


def context_masks(width: int, centres: int, layers: int) -> list[torch.Tensor]:
    """The weight masks (out, in, 2, 3, 3) of the context model's layers."""
    return [torch.from_numpy(mask) for mask in mask_arrays(width, centres, layers)]


class ContextModel(nn.Module):
    """Masked 3D CNN: base-2 logits over the L centres for every symbol of a (B, K, h, w) volume."""

    def __init__(self, config: CpmConfig):
        super().__init__()
        self.layers = nn.ModuleList()
        masks = context_masks(config.context_width, config.centres, config.context_layers)
        for i, mask in enumerate(masks):
            self.layers.append(nn.Conv3d(mask.shape[1], mask.shape[0], (2, 3, 3)))
            self.register_buffer(f"mask{i}", mask)

    def masks(self) -> list[torch.Tensor]:
        return [getattr(self, f"mask{i}") for i in range(len(self.layers))]

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """planes (B, 3, K, h, w) -> logits (B, L, K, h, w)."""
        x = planes
        for i, (layer, mask) in enumerate(zip(self.layers, self.masks(), strict=True)):
            x = F.conv3d(F.pad(x, (1, 1, 1, 1, 1, 0)), layer.weight * mask, layer.bias)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def context_planes(coded_values: torch.Tensor, mask: torch.Tensor, quality_value: torch.Tensor) -> torch.Tensor:
    """The context model's input planes (B, 3, K, h, w); quality_value: (B,) in [0, 1]."""
    quality_plane = quality_value[:, None, None, None].to(mask.dtype).expand_as(mask)
    return torch.stack([coded_values, mask, quality_plane], dim=1)


def quality_values(count: int) -> torch.Tensor:
    """The quality plane's value of each quality: q / (count - 1) on the fixed-point grid."""
    return torch.from_numpy(quality_value_array(count))
