"""What the imported models' torch codecs and their torch-free runtime share: the architectures,
strides, tiles, the operating points, and the layers of every network that selects a probability
table, declared by name so that they can be built from a weight file's arrays without torch
(``coding.py``; tests/test_compressai.py checks each against the torch modules' ``freeze``)."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.tiles import Tiles
from ..interface import Qualities

DOWNSAMPLING = 64  # g_a then h_a
LATENT_STRIDE = 16
# Margins over twice the receptive fields (those of lic's own hyperprior; cheng2020-anchor's residual
# synthesis reaches ±5 latents, hence its margin of 12), so that tiles meet without seams.
ANALYSIS_TILES = Tiles(core=1024, margin=64)
HYPER_ANALYSIS_TILES = Tiles(core=64, margin=16)
HYPER_SYNTHESIS_TILES = Tiles(core=16, margin=4)
SYNTHESIS_TILES = Tiles(core=64, margin=12)
ENCODER_PREFIXES = ("g_a.", "h_a.")
LEAKY_SLOPE = 0.01  # torch's and CompressAI's LeakyReLU


@dataclass(frozen=True)
class Architecture:
    """What an imported architecture is made of."""

    mean: bool  # the hyper-synthesis predicts means too (h_a reads y, not |y|)
    context: bool  # a context model: mbt2018's masked convolution, or ELIC's groups
    residual: bool  # cheng2020-anchor's residual blocks (M = N)
    elic: bool = False  # ELIC's uneven channel groups with a checkerboard context


# lic model name (CompressAI's zoo name) -> its architecture
ARCHITECTURES = {"bmshj2018-hyperprior": Architecture(False, False, False),
                 "mbt2018-mean": Architecture(True, False, False),
                 "mbt2018": Architecture(True, True, False),
                 "cheng2020-anchor": Architecture(True, True, True),
                 "elic2022-official": Architecture(True, True, False, elic=True)}


def qualities(config: dict) -> Qualities:
    count = len(config.get("widths", ((128, 192),)))
    return Qualities(count, count // 2, f"1-{count} (a network per imported checkpoint)" if count > 1
                     else "one per imported checkpoint")


@dataclass(frozen=True)
class Layer:
    """One convolution of a fixed-point stack: its parameter name under the stack's prefix, its
    geometry and the activation after it (and after the pixel shuffle, where there is one)."""

    name: str
    transposed: bool = False
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    activation: str | None = None  # "relu", "leaky" or None
    shuffle: int = 1

    def fields(self) -> dict:
        """FixedConv's keyword arguments."""
        return {"transposed": self.transposed, "stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding, "relu": self.activation is not None,
                "negative_slope": LEAKY_SLOPE if self.activation == "leaky" else 0.0, "shuffle": self.shuffle}


def up(name: str, activation: str | None = None, kernel: int = 5, stride: int = 2) -> Layer:
    """CompressAI's deconv: a transposed convolution that multiplies the size by its stride."""
    return Layer(name, transposed=True, stride=stride, padding=kernel // 2, output_padding=stride - 1,
                 activation=activation)


def same(name: str, activation: str | None = None, kernel: int = 3) -> Layer:
    """A stride-1 convolution that keeps the size."""
    return Layer(name, padding=kernel // 2, activation=activation)


def subpixel(name: str, activation: str | None = None) -> Layer:
    """CompressAI's subpel_conv3x3 (a 3x3 convolution, then PixelShuffle(2))."""
    return Layer(name, padding=1, activation=activation, shuffle=2)


def hyper_synthesis_layers(architecture: Architecture) -> tuple[Layer, ...]:
    """h_s of each architecture (its parameters are h_s.<quality>.<name>)."""
    if architecture.elic:
        return up("0", "relu"), up("2", "relu"), up("4", kernel=3, stride=1)
    if architecture.residual:
        return (same("0", "leaky"), subpixel("2.0", "leaky"), same("4", "leaky"), subpixel("6.0", "leaky"),
                same("8"))
    if architecture.mean:
        return up("0", "leaky"), up("2", "leaky"), same("4")
    return up("0", "relu"), up("2", "relu"), same("4", "relu")


# mbt2018's entropy-parameter network (1x1 convolutions), entropy_parameters.<quality>.<name>
ENTROPY_PARAMETER_LAYERS = (Layer("0", activation="leaky"), Layer("2", activation="leaky"), Layer("4"))
# ELIC's networks of one group: g_ch (three 5x5 convolutions) and the param aggregation (1x1)
CHANNEL_CONTEXT_LAYERS = (same("0", "relu", 5), same("2", "relu", 5), same("4", kernel=5))
AGGREGATION_LAYERS = (Layer("0", activation="relu"), Layer("2", activation="relu"), Layer("4"))
CONTEXT_KERNEL = 5  # mbt2018's masked convolution, ELIC's spatial and channel contexts
CHANNEL_CONTEXT_REACH = 3 * (CONTEXT_KERNEL // 2)  # ELIC's g_ch: three 5x5 convolutions


def default_groups(m: int) -> tuple[int, ...]:
    """CompressAI's default split of ELIC's M latent channels."""
    return (16, 16, 32, 64, m - 128)


def elic_groups(config: dict, widths) -> tuple[tuple[int, ...], ...]:
    """Each quality's channel groups: the configuration's, or CompressAI's default split of its M."""
    groups = config.get("groups") or [default_groups(m) for _, m in widths]
    return tuple(tuple(int(v) for v in g) for g in groups)
