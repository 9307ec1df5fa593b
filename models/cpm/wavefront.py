"""The context model in fixed point, evaluated in wavefronts (t = 4c + 2h + w) at coding time."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime import fixed
from .layout import INPUT_PLANES, WAVEFRONT, context_masks, quality_values


# ---------------------------------------------------------------------------------------------
# Exact context probabilities
# ---------------------------------------------------------------------------------------------
class ContextVolume:
    """One context tile's symbol volume (K, h, w) in a zero-padded flat layout (one channel slice
    in front, one row/column on each side: the context model's padding), with every layer's
    activations (flat position, channels) on the fixed-point grid."""

    def __init__(self, channels: int, height: int, width: int, widths: list[int]):
        self.shape = (channels, height, width)
        self.padded = (channels + 1, height + 2, width + 2)
        size = self.padded[0] * self.padded[1] * self.padded[2]
        # float32 holds every activation exactly (a 2^-8 grid within +-2^12: 21 significant bits).
        self.activations = [np.zeros((size, w), dtype=np.float32) for w in widths]
        plane, row = self.padded[1] * self.padded[2], self.padded[2]
        self.offsets = np.array([(d - 1) * plane + (r - 1) * row + (c - 1)
                                 for d in range(2) for r in range(3) for c in range(3)], dtype=np.int64)
        c, h, w = np.meshgrid(*(np.arange(n) for n in self.shape), indexing="ij")
        self.flat = ((c + 1) * plane + (h + 1) * row + (w + 1)).ravel()  # volume order (c, h, w)
        self.needed: list[np.ndarray] = []  # per layer: where its output is computed (needed_positions)


@dataclass
class FixedContextLayer:
    weight: np.ndarray  # (18 * in, out) float64 on the 2^-14 grid, masked
    bias: np.ndarray  # (out,) float64 on the 2^-22 grid
    relu: bool


class FixedContext:
    """The context model in exact fixed point (models/runtime/fixed.py), evaluated at any set of
    volume positions by gathering their 2x3x3 neighbourhoods: one parallel pass for the encoder,
    one wavefront step at a time for the decoder, with identical arithmetic."""

    CHUNK = 8192  # positions per gather in a parallel pass (bounds its memory)

    def __init__(self, network: dict[str, np.ndarray], quality_count: int):
        """network: the model's parameters by name (a weight file's, or a torch model's state);
        quality_count: its number of qualities (they set the quality plane's values)."""
        count = sum(1 for name in network if name.startswith("context.layers.") and name.endswith(".weight"))
        weights = [network[f"context.layers.{i}.weight"] for i in range(count)]
        masks = context_masks(weights[0].shape[0], weights[-1].shape[0], count)
        self.layers = []
        for i, (weight, mask) in enumerate(zip(weights, masks, strict=True)):
            integer = fixed.integer_weight_array(weight.astype(np.float32) * mask)
            bias = fixed.integer_bias_array(network[f"context.layers.{i}.bias"])
            fixed.check_exactness_array(integer, bias)
            # (out, in, d, r, c) -> (d, r, c, in, out): rows match a gathered (position, offset, channel) block.
            matrix = integer.transpose(2, 3, 4, 1, 0).reshape(-1, integer.shape[0]) * 2.0**-fixed.WEIGHT_FRAC_BITS
            self.layers.append(FixedContextLayer(matrix, bias * 2.0**-fixed.PRODUCT_FRAC_BITS, relu=i < count - 1))
        self.values = fixed.snap_array(network["centres"].astype(np.float64))
        self.widths = [INPUT_PLANES] + [layer.bias.shape[0] for layer in self.layers[:-1]]
        self.quality_values = quality_values(quality_count)

    @classmethod
    def of_model(cls, model) -> FixedContext:
        """The fixed-point context model of a torch ConditionalProbabilityModel."""
        return cls({name: value.detach().cpu().numpy() for name, value in model.state_dict().items()
                    if name.startswith("context.layers.") or name == "centres"}, model.num_qualities)

    def volume(self, shape: tuple[int, int, int], mask: np.ndarray, quality: int) -> ContextVolume:
        """A volume whose importance mask and quality planes are filled, symbols not yet known."""
        volume = ContextVolume(*shape, self.widths)
        volume.needed = needed_positions(mask, len(self.layers))
        inputs = volume.activations[0]
        inputs[volume.flat, 1] = mask.ravel()
        inputs[volume.flat, 2] = self.quality_values[quality]
        return volume

    def set_symbols(self, volume: ContextVolume, positions: np.ndarray, symbols: np.ndarray) -> None:
        """Make decoded symbols (at volume-order indices) known to the later layers' inputs."""
        volume.activations[0][volume.flat[positions], 0] = self.values[symbols]

    def logits(self, volume: ContextVolume, positions: np.ndarray) -> np.ndarray:
        """Every layer at those of these volume-order positions where it is needed (their inputs
        known), caching hidden activations; the base-2 logits (n, L) on the fixed-point grid of
        the coded positions among them, in their order."""
        x = None
        for i in range(len(self.layers)):
            x = self._layer(volume, i, positions[volume.needed[i][positions]])
        return x

    def all_logits(self, volume: ContextVolume) -> np.ndarray:
        """The logits (n, L) of every coded position of a fully known volume, in volume order: one
        layer at a time over the positions where it is needed."""
        x = None
        for i in range(len(self.layers)):
            needed = np.flatnonzero(volume.needed[i])
            x = [self._layer(volume, i, needed[start:start + self.CHUNK])
                 for start in range(0, needed.size, self.CHUNK)]
        return np.concatenate(x) if x else np.zeros((0, len(self.values)))

    def _layer(self, volume: ContextVolume, index: int, positions: np.ndarray) -> np.ndarray:
        """Layer `index` at volume-order positions from the cached activations of the layer below."""
        layer = self.layers[index]
        if not positions.size:
            return np.zeros((0, layer.bias.size))
        flat = volume.flat[positions]
        neighbourhoods = volume.activations[index][flat[:, None] + volume.offsets[None, :]]
        x = fixed.exact_matmul(neighbourhoods.reshape(len(flat), -1), layer.weight) + layer.bias
        if layer.relu:
            np.maximum(x, 0, out=x)
        x = fixed.snap_array(x)
        if index + 1 < len(self.layers):
            volume.activations[index + 1][flat] = x
        return x


def needed_positions(coded: np.ndarray, layers: int) -> list[np.ndarray]:
    """Per layer, the volume-order positions (bool) where its output is needed: the last layer's
    at the coded symbols, each layer below at every position that a needed one above reads. At
    low rates most of the volume is never evaluated."""
    needed = [coded.ravel()]
    channels, height, width = coded.shape
    for _ in range(layers - 1):
        above = needed[0].reshape(coded.shape)
        padded = np.pad(above, ((0, 1), (1, 1), (1, 1)))
        below = above.copy()
        for depth in (0, 1):  # a position is read by the same and the next channel slice ...
            for row in (0, 1, 2):  # ... one row/column around it
                for col in (0, 1, 2):
                    below |= padded[depth:depth + channels, row:row + height, col:col + width]
        needed.insert(0, below.ravel())
    return needed


def wavefront_steps(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): volume-order indices sorted by t = 4c + 2h + w (then volume order), and
    where each step (a value of t that occurs) begins in that order, one more entry: the end."""
    c, h, w = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    t = (WAVEFRONT[0] * c + WAVEFRONT[1] * h + WAVEFRONT[2] * w).ravel()
    order = np.argsort(t, kind="stable")
    steps = t[order]
    starts = np.concatenate(([0], np.flatnonzero(steps[1:] != steps[:-1]) + 1, [steps.size]))
    return order, starts
