"""CompressAI checkpoints to lic networks: key layouts, widths, and the checks that refuse what is
not one of the supported architectures."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from .elic import ElicConfig, ImportedElic, checkerboard_mask
from .network import ImportedConfig, ImportedHyperprior, causal_mask

# CompressAI buffers that lic does not need: its CDF tables (lic computes its own from the
# densities), reparametrisation constants (lic's layers have the same) and bounds.
IGNORED = re.compile(r"(^|\.)(_offset|_quantized_cdf|_cdf_length|scale_table|scale_bound|target|"
                     r"likelihood_lower_bound\.bound|lower_bound_scale\.bound|(beta|gamma)_reparam\..*)$")
DENSITY_KEY = re.compile(r"^entropy_bottleneck\.(?:_?(matrices|biases|factors)\.|_(matrix|bias|factor))(\d+)$")
DENSITY_PARTS = {"matrices": "matrices", "matrix": "matrices", "biases": "biases", "bias": "biases",
                 "factors": "factors", "factor": "factors"}
TRANSFORMS = ("g_a", "g_s", "h_a", "h_s", "context_prediction", "entropy_parameters", "context")
# CompressAI's latent-codec layout (elic2022-official) -> the flat names above.
LATENT_CODEC_KEYS = ((re.compile(r"^latent_codec\.hyper\."), ""),
                     (re.compile(r"^latent_codec\.y\.channel_context\."), "context.channel_context."),
                     (re.compile(r"^latent_codec\.y\.latent_codec\.(y\d+)\.context_prediction\."),
                      r"context.spatial_context.\1."),
                     (re.compile(r"^latent_codec\.y\.latent_codec\.(y\d+)\.entropy_parameters\."),
                      r"context.param_aggregation.\1."))
LIC_TO_LATENT_CODEC = {"channel_context": "latent_codec.y.channel_context.{group}",
                       "spatial_context": "latent_codec.y.latent_codec.{group}.context_prediction",
                       "param_aggregation": "latent_codec.y.latent_codec.{group}.entropy_parameters"}


class CheckpointError(ValueError):
    """A checkpoint is not a CompressAI state dict of the architecture asked for."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint as CompressAI saves them: a bare state dict (the zoo's files, with
    or without DataParallel's `module.` prefix) or {"state_dict": ...} (its training example)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a loadable checkpoint ({type(error).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def flat_key(key: str) -> str:
    """A key of CompressAI's latent-codec layout in the flat layout of its older models."""
    for pattern, replacement in LATENT_CODEC_KEYS:
        key = pattern.sub(replacement, key)
    return key


def lic_key(key: str, quality: int) -> str | None:
    """The lic parameter name of a CompressAI key for network `quality` (None: not needed)."""
    key = flat_key(key)
    if IGNORED.search(key) or key.endswith(".mask"):  # masks are applied to the weights
        return None
    density = DENSITY_KEY.match(key)
    if density:
        part = DENSITY_PARTS[density.group(1) or density.group(2)]
        return f"density.{quality}.{part}.{density.group(3)}"
    if key == "entropy_bottleneck.quantiles":
        return f"medians.{quality}"
    transform, _, rest = key.partition(".")
    if transform in TRANSFORMS:
        rest = re.sub(r"\.(beta|gamma)$", r".\1.raw", rest).replace(".downsample.", ".skip.")
        return f"{transform}.{quality}.{rest}"
    return key  # unknown: reported as unexpected


def compressai_key(name: str, latent_codec: bool = False) -> str:
    """The CompressAI key (its current layout) of a lic parameter name, for error messages;
    latent_codec: of a model in the latent-codec layout (elic2022-official)."""
    part, _, rest = name.partition(".")
    rest = rest.partition(".")[2]
    hyper = "latent_codec.hyper." if latent_codec else ""
    if part == "medians":
        return f"{hyper}entropy_bottleneck.quantiles"
    if part == "density":
        return f"{hyper}entropy_bottleneck.{rest}"
    if part == "context":
        module, group, tail = rest.split(".", 2)
        return f"{LIC_TO_LATENT_CODEC[module].format(group=group)}.{tail}"
    return f"{hyper if part in ('h_a', 'h_s') else ''}{part}.{rest.removesuffix('.raw')}"


def widths(state: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """(N, M) read from the tensors: g_a's first and last convolutions (cheng2020-anchor: M = N)."""
    if "g_a.0.conv1.weight" in state:
        return int(state["g_a.0.conv1.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    try:
        return int(state["g_a.0.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    except KeyError as error:
        raise CheckpointError(f"{path}: missing {error.args[0]} (not a checkpoint of this architecture)") from None


def elic_sizes(state: dict[str, torch.Tensor], path: Path) -> tuple[tuple[int, int], tuple[int, ...], tuple[int, int]]:
    """((N, M), channel groups, the channel context's hidden widths) of an elic2022-official
    checkpoint, read from the tensors."""
    try:
        n, m = int(state["g_a.0.weight"].shape[0]), int(state["g_a.13.weight"].shape[0])
    except KeyError as error:
        raise CheckpointError(f"{path}: missing {error.args[0]} (not a checkpoint of this architecture)") from None
    groups = []
    while (key := f"latent_codec.y.latent_codec.y{len(groups)}.context_prediction.weight") in state:
        groups.append(int(state[key].shape[1]))
    first = state.get("latent_codec.y.channel_context.y1.0.weight")
    second = state.get("latent_codec.y.channel_context.y1.2.weight")
    if len(groups) < 2 or first is None or second is None or sum(groups) != m:
        raise CheckpointError(f"{path}: no channel groups adding up to M={m} (not a checkpoint of this "
                              "architecture)")
    return (n, m), tuple(groups), (int(first.shape[0]), int(second.shape[0]))


def network_for(states: list[dict[str, torch.Tensor]], paths: list[Path], mean: bool, context: bool, residual: bool,
                elic: bool, lambdas: tuple[float, ...]) -> ImportedHyperprior | ImportedElic:
    """The lic network (one quality per checkpoint) that the checkpoints' tensors fill."""
    if not elic:
        sizes = tuple(widths(state, Path(path)) for state, path in zip(states, paths, strict=True))
        return ImportedHyperprior(ImportedConfig(sizes, mean, context, residual, tuple(lambdas)))
    read = [elic_sizes(state, Path(path)) for state, path in zip(states, paths, strict=True)]
    return ImportedElic(ElicConfig(tuple(r[0] for r in read), mean=True, context=True, lambdas=tuple(lambdas),
                                   groups=tuple(r[1] for r in read), channel_context_widths=tuple(r[2] for r in read)))


def masked(key: str, value: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """A masked convolution's weights with its mask applied (the network lic runs has zero taps
    there); other tensors as they are."""
    if key == "context_prediction.weight":
        return value * state.get("context_prediction.mask", causal_mask(*value.shape[:2]))
    if key.endswith(".context_prediction.weight"):
        return value * state.get(key.removesuffix("weight") + "mask", checkerboard_mask(*value.shape[:2]))
    return value


def convert(paths: list[Path], mean: bool, context: bool = False, residual: bool = False, elic: bool = False,
            lambdas: tuple[float, ...] = ()) -> tuple[ImportedHyperprior | ImportedElic, dict]:
    """One lic network holding each checkpoint as a quality, in the order given, and the record of
    where it came from."""
    states = [read_state_dict(Path(path)) for path in paths]
    if lambdas and len(lambdas) != len(paths):
        raise CheckpointError(f"{len(lambdas)} lambdas for {len(paths)} checkpoints")
    model = network_for(states, paths, mean, context, residual, elic, lambdas)
    sizes = model.config.widths
    expected = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for quality, (state, path) in enumerate(zip(states, paths, strict=True)):
        unexpected = []
        for key, value in state.items():
            name = lic_key(key, quality)
            if name is None:
                continue
            if name not in expected:
                unexpected.append(key)
                continue
            if name.startswith("medians."):
                value = value[:, 0, 1]
            value = masked(key, value, state)
            if value.shape != expected[name].shape:
                raise CheckpointError(f"{path} is not a checkpoint of this architecture: {key} has shape "
                                      f"{tuple(value.shape)}, expected "
                                      f"{tuple(expected[name].shape)} (N={sizes[quality][0]}, M={sizes[quality][1]})")
            converted[name] = value.float()
        missing = [compressai_key(name, elic) for name in expected
                   if name.split(".")[1] == str(quality) and name not in converted]
        if unexpected or missing:
            parts = ([f"unexpected {', '.join(unexpected[:4])}"] if unexpected else []) + \
                    ([f"missing {', '.join(missing[:4])}"] if missing else [])
            raise CheckpointError(f"{path} does not have the layout of this architecture: {'; '.join(parts)}")
    model.load_state_dict(converted)
    card = {"imported_from": "CompressAI checkpoints, one per quality: " + ", ".join(
        f"{Path(path).name} (sha256 {hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]}, N={n}, M={m})"
        for path, (n, m) in zip(paths, sizes, strict=True))}
    return model, card
