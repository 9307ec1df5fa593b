"""CompressAI checkpoints to lic networks: key layouts, widths, and the checks that refuse what is
not one of the supported architectures."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from .network import ImportedConfig, ImportedHyperprior, causal_mask

# CompressAI buffers that lic does not need: its CDF tables (lic computes its own from the
# densities), reparametrisation constants (lic's layers have the same) and bounds.
IGNORED = re.compile(r"(^|\.)(_offset|_quantized_cdf|_cdf_length|scale_table|scale_bound|target|"
                     r"likelihood_lower_bound\.bound|lower_bound_scale\.bound|(beta|gamma)_reparam\..*)$")
DENSITY_KEY = re.compile(r"^entropy_bottleneck\.(?:_?(matrices|biases|factors)\.|_(matrix|bias|factor))(\d+)$")
DENSITY_PARTS = {"matrices": "matrices", "matrix": "matrices", "biases": "biases", "bias": "biases",
                 "factors": "factors", "factor": "factors"}
TRANSFORMS = ("g_a", "g_s", "h_a", "h_s", "context_prediction", "entropy_parameters")


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


def lic_key(key: str, quality: int) -> str | None:
    """The lic parameter name of a CompressAI key for network `quality` (None: not needed)."""
    if IGNORED.search(key) or key == "context_prediction.mask":  # the mask is applied to the weights
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


def compressai_key(name: str) -> str:
    """The CompressAI key (its current layout) of a lic parameter name, for error messages."""
    part, _, rest = name.partition(".")
    rest = rest.partition(".")[2]
    if part == "medians":
        return "entropy_bottleneck.quantiles"
    if part == "density":
        return f"entropy_bottleneck.{rest}"
    return f"{part}.{rest.removesuffix('.raw')}"


def widths(state: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """(N, M) read from the tensors: g_a's first and last convolutions (cheng2020-anchor: M = N)."""
    if "g_a.0.conv1.weight" in state:
        return int(state["g_a.0.conv1.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    try:
        return int(state["g_a.0.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    except KeyError as error:
        raise CheckpointError(f"{path}: missing {error.args[0]} (not a hyperprior of CompressAI's layout)") from None


def convert(paths: list[Path], mean: bool, context: bool = False, residual: bool = False,
            lambdas: tuple[float, ...] = ()) -> tuple[ImportedHyperprior, dict]:
    """One lic network holding each checkpoint as a quality, in the order given, and the record of
    where it came from."""
    states = [read_state_dict(Path(path)) for path in paths]
    sizes = tuple(widths(state, Path(path)) for state, path in zip(states, paths, strict=True))
    if lambdas and len(lambdas) != len(paths):
        raise CheckpointError(f"{len(lambdas)} lambdas for {len(paths)} checkpoints")
    model = ImportedHyperprior(ImportedConfig(sizes, mean, context, residual, tuple(lambdas)))
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
            if key == "context_prediction.weight":  # masked taps are zero in the network lic runs
                value = value * state.get("context_prediction.mask", causal_mask(*value.shape[:2]))
            if value.shape != expected[name].shape:
                raise CheckpointError(f"{path} is not a checkpoint of this architecture: {key} has shape "
                                      f"{tuple(value.shape)}, expected "
                                      f"{tuple(expected[name].shape)} (N={sizes[quality][0]}, M={sizes[quality][1]})")
            converted[name] = value.float()
        missing = [compressai_key(name) for name in expected
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
