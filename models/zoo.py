"""The registry: every zoo model and what differs per family.

A family is one module in ``models/`` (network, entropy models, a codec implementing
``models.interface.ImageCodec``) plus one ``ZooEntry`` here: builder, codec, weight file, coded
sections, operating points, training driver and its options. The CLI, the benchmarks and the
conformance tests work from these entries and never name a family.

A weight file is a ``torch.save``d dict of plain types and tensors, loaded with
``weights_only=True`` (no unpickling of arbitrary objects):
``{"format": "lic-weights", "version": 2, "model": name, "config": {...},
"network": {param: fp16 tensor}, "coding": {name: exact tensor}, "card": {...}}``. Version 2
stores probability-table counts as 16-bit patterns (``models.entropy.tables_to_tensors``);
version 1 files (int32 counts) still load.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import cpm, defaults, flow, gc, hyper_bb, hyper_ctx
from .hyper import (
    HyperCodec,
    HyperConfig,
    MeanScaleHyperprior,
    freeze_coding_tensors,
    grow_latents,
    ladder_qualities,
    retarget_gains,
)
from .interface import ImageCodec, Qualities

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FORMAT = "lic-weights"
WEIGHTS_VERSION = 2
READABLE_WEIGHTS_VERSIONS = (1, 2)
HASH_BYTES = 8


@dataclass(frozen=True)
class Training:
    """How `lic train` trains a family.

    driver: the training loop ("rate-distortion": one R-D loss over a quality ladder; "gan": the
    distortion-then-adversarial schedule with a discriminator). options: the `lic train` options
    (parameter names) that only this family takes. sizes: `lic train` size option -> config key.
    source_model: the form of q(x | x̂) for `--reg cse` (models.cse.KINDS), mirroring the
    family's latent entropy model; None where the regularizer does not apply."""

    driver: str
    options: frozenset[str] = frozenset()
    sizes: dict[str, str] = dataclasses.field(default_factory=dict)
    # The sizes a run started from weights of this configuration keeps (--init): config -> config.
    inherited_sizes: Callable[[dict], dict] = lambda config: config
    source_model: str | None = None


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    build: Callable[[dict], nn.Module]
    codec: Callable[..., ImageCodec]  # (network, coding tensors, device, compute) -> codec
    weight_file: str
    config: dict
    freeze: Callable[[nn.Module], dict]  # the exact coding tensors derived from a trained network
    qualities: Callable[[dict], Qualities]  # operating points of a configuration, without loading weights
    training: Training
    tiny_config: dict  # a network small enough for logic tests (random weights, seconds per round trip)
    init_from: dict[str, Callable] = dataclasses.field(default_factory=dict)  # other zoo model -> adapter
    # Adapts a trained state to the target network's sizes (e.g. a grown latent, another ladder).
    fit_state: Callable[[dict, nn.Module], dict] | None = None
    # Fits a trained network's operating points to data, the network frozen (`lic tune`):
    # (network, batches of crops in [0, 1], iterations, learning rate, log) -> None, in place.
    tune: Callable[..., None] | None = None
    shipped: bool = True  # False: registered and trainable, but no weight file is committed yet
    bench_by_default: bool = True  # False: `lic bench` runs it only when asked (--models)

    @property
    def sections(self) -> tuple[str, ...]:
        """The coded container sections its codec writes (bitstream.container names)."""
        return tuple(self.codec.section_names)


def _hyper_config(config: dict) -> HyperConfig:
    return HyperConfig(**{**config, "lambdas": tuple(config.get("lambdas", HyperConfig().lambdas))})


def _hyper(config: dict) -> MeanScaleHyperprior:
    return MeanScaleHyperprior(_hyper_config(config))


def _hyper_bb(config: dict) -> hyper_bb.BitsBackHyperprior:
    return hyper_bb.BitsBackHyperprior(_hyper_config(config))


def _gc(config: dict) -> gc.GenerativeCompression:
    return gc.GenerativeCompression(gc.GcConfig(**config))


def _ladder(config: dict) -> Qualities:
    return ladder_qualities(config.get("lambdas", HyperConfig().lambdas))


def _continuous_ladder(config: dict) -> Qualities:
    return ladder_qualities(config.get("lambdas", HyperConfig().lambdas), continuous=True)


def _fit_hyper_state(state: dict, target: nn.Module) -> dict:
    return retarget_gains(grow_latents(state, target), target.config.lambdas)


def _hyper_sizes(config: dict) -> dict:
    # An unset hyper-synthesis width follows M; a grown latent keeps the trained width.
    return {**config, "hyper_width": config.get("hyper_width") or config.get("latent_channels")}


HYPER_SIZES = {"channels": "channels", "latent_channels": "latent_channels", "hyper_width": "hyper_width"}
HYPER_OPTIONS = frozenset({"hyper_width", "grow_warmup", "qualities", "straight_through_after"})
HYPER_TINY = {"channels": 8, "latent_channels": 12}
# name -> (C, adversarial, selective)
GC_MODELS = {"gc-c2": (2, True, False), "gc-c4": (4, True, False), "gc-c8": (8, True, False),
             "gc-c4-mse": (4, False, False), "gc-c4-sc": (4, True, True)}


def _gc_entry(name: str) -> ZooEntry:
    bottleneck, adversarial, selective = GC_MODELS[name]
    what = "GAN" if adversarial else "MSE-only baseline of the GAN"
    if selective:
        what += " with selective generation (--preserve MASK: only the kept region is coded)"
    config = dataclasses.asdict(gc.GcConfig(bottleneck=bottleneck, adversarial=adversarial, selective=selective))
    # Any gc model can start another (e.g. gc-c2 from the distortion-trained gc-c4-mse).
    starts = {other: gc.adapt_state for other in GC_MODELS if other != name}
    bound_bpp = gc.bound_bits(512, 768, bottleneck) / (512 * 768)
    options = {"gan_after", "discriminator_width", "ms_ssim_weight"}
    options |= {"synthesised_colour_weight"} if selective else set()
    training = Training("gan", frozenset(options), {"channels": "width", "latent_channels": "context_width"})
    return ZooEntry(
        name, f"generative compression (Agustsson et al. 2019), {what}, C={bottleneck}: "
        f"<= {bound_bpp:.4f} bpp at 768x512", build=_gc, codec=gc.SelectiveGcCodec if selective else gc.GcCodec,
        weight_file=f"{name}.pt", config=config,
        freeze=gc.freeze_coding_tensors, qualities=lambda _: gc.GcCodec.qualities,
        training=training, tiny_config={"width": 16, "residual_blocks": 1, "context_width": 8}, init_from=starts,
        bench_by_default=False)


HYPER_TRAINING = Training("rate-distortion", HYPER_OPTIONS, HYPER_SIZES, _hyper_sizes, source_model="factorized")

ZOO: dict[str, ZooEntry] = {
    "hyper": ZooEntry(
        "hyper", "mean-scale hyperprior (Minnen et al. 2018), MSE, 6 qualities in one network",
        build=_hyper, codec=HyperCodec, weight_file="hyper.pt", config=dataclasses.asdict(HyperConfig()),
        freeze=freeze_coding_tensors, qualities=_continuous_ladder,
        training=dataclasses.replace(HYPER_TRAINING, options=HYPER_OPTIONS | {"freeze_encoder"}),
        tiny_config=HYPER_TINY, fit_state=_fit_hyper_state),
    "hyper-bb": ZooEntry(
        "hyper-bb", "hyperprior with lossy bits-back coding of the hyperlatent (Yang et al. 2020); "
        "carries metadata/side information and album images for free",
        build=_hyper_bb, codec=hyper_bb.BitsBackCodec, weight_file="hyper-bb.pt",
        config=dataclasses.asdict(HyperConfig()), freeze=hyper_bb.freeze_coding_tensors,
        qualities=_ladder, training=HYPER_TRAINING,
        tiny_config=HYPER_TINY, init_from={"hyper": hyper_bb.adapt_hyper_state}, fit_state=_fit_hyper_state,
        bench_by_default=False),
    "hyper-ctx": ZooEntry(
        "hyper-ctx", "hyper's transforms with a channel-conditional checkerboard context model (ELIC-style groups, "
        "10 parallel passes), 6 qualities",
        build=hyper_ctx.build, codec=hyper_ctx.HyperCtxCodec, weight_file="hyper-ctx.pt",
        config=dataclasses.asdict(hyper_ctx.HyperCtxConfig()), freeze=freeze_coding_tensors,
        qualities=_continuous_ladder,
        training=dataclasses.replace(HYPER_TRAINING, options=HYPER_OPTIONS | {"freeze_transforms", "context_lr"}),
        tiny_config={"channels": 8, "latent_channels": 12, "hyper_width": 8, "groups": [2, 2, 4, 4],
                     "context_width": 8, "neighbour_width": 4},
        init_from={"hyper": hyper_ctx.adapt_hyper_state}),
    **{name: _gc_entry(name) for name in GC_MODELS},
    "cpm": ZooEntry(
        "cpm", "conditional probability models (Mentzer et al. 2018): importance map, learned centres, "
        "3D-CNN context model decoded in wavefronts; MS-SSIM, 4 qualities in one network",
        build=cpm.build, codec=cpm.CpmCodec, weight_file="cpm.pt", config=dataclasses.asdict(cpm.CpmConfig()),
        freeze=cpm.freeze_coding_tensors, qualities=cpm.qualities,
        training=Training("rate-distortion", frozenset({"qualities"}),
                          {"channels": "channels", "latent_channels": "latent_channels"}, source_model="context"),
        tiny_config={"channels": 8, "stem_channels": 4, "groups": 1, "blocks_per_group": 1, "latent_channels": 6,
                     "context_width": 8},
        ),
    "flow": ZooEntry(
        "flow", "normalizing-flow codec (Helminger et al.): a bijective transform, one network from low rates "
        "to near-lossless, stable re-encoding, progressive decoding",
        build=flow.build, codec=flow.FlowCodec, weight_file="flow.pt", config=dataclasses.asdict(flow.FlowConfig()),
        freeze=flow.freeze_coding_tensors, qualities=flow.qualities,
        training=Training("rate-distortion", source_model="factorized"),
        tiny_config={"widths": [4, 4, 4], "steps_per_level": 1, "blocks": 1, "prior_width": 4},
        fit_state=flow.fit_ladder, tune=flow.fit_steps),
}
DEFAULT_MODEL = defaults.DEFAULT_MODEL


def register(zoo_entry: ZooEntry) -> None:
    """Add a model to the zoo (a new family's module calls this, or a test registers a toy one)."""
    if zoo_entry.name in ZOO:
        raise ValueError(f"model {zoo_entry.name!r} is already registered")
    ZOO[zoo_entry.name] = zoo_entry


class WeightsError(ValueError):
    """A weight file is missing, foreign or does not match the model."""


@dataclass
class LoadedCodec:
    name: str
    codec: ImageCodec
    weights_hash: bytes  # first HASH_BYTES of SHA-256 of the file
    path: Path
    card: dict


def entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(ZOO))})")
    return ZOO[name]


def models_with(**capabilities) -> list[str]:
    """Names of the models whose codecs have these capabilities, e.g. models_with(selective=True)."""
    return [name for name, item in ZOO.items()
            if all(getattr(item.codec.capabilities, key) == value for key, value in capabilities.items())]


def build_trainable(name: str, config: dict | None = None) -> nn.Module:
    zoo_entry = entry(name)
    return zoo_entry.build({**zoo_entry.config, **(config or {})})


def config_as_dict(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def default_weights_path(name: str) -> Path:
    return WEIGHTS_DIR / entry(name).weight_file


def export_weights(model: nn.Module, name: str, path: Path, card: dict | None = None) -> Path:
    """Write a weight file: fp16 network parameters plus the frozen coding tables derived from them."""
    half = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
            for k, v in model.state_dict().items()}
    rounded = build_trainable(name, config_as_dict(model.config))
    rounded.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    payload = {
        "format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "model": name,
        "config": config_as_dict(model.config), "network": half,
        "coding": entry(name).freeze(rounded.eval()), "card": dict(card or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _read_weight_file(name: str, path: Path, also: Iterable[str] = ()) -> tuple[dict, bytes]:
    """(payload, raw bytes) of a weight file for model `name` (or one of the models in `also`): the
    hash is taken from exactly the bytes that were loaded."""
    if not path.is_file():
        hint = "" if entry(name).shipped else f" (not trained yet: lic train --model {name} --data DIR)"
        raise WeightsError(f"weights for model {name!r} not found at {path}{hint}")
    payload, raw = _load_weight_file(path)
    if payload.get("model") != name and payload.get("model") not in also:
        raise WeightsError(f"{path} holds weights for model {payload.get('model')!r}, not {name!r}")
    return payload, raw


def _load_weight_file(path: Path) -> tuple[dict, bytes]:
    """(payload, raw bytes) of an existing file that is a lic weight file of a version this lic reads."""
    raw = path.read_bytes()
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path} is not a loadable lic weight file ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path} is not a lic weight file")
    if payload.get("version") not in READABLE_WEIGHTS_VERSIONS:
        raise WeightsError(f"{path} has weight-file version {payload.get('version')}; this lic reads versions "
                           f"{', '.join(map(str, READABLE_WEIGHTS_VERSIONS))}")
    return payload, raw


def load_network_state(path: Path, name: str, target: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The float32 network parameters of a weight file, for training `name` from it: the same model
    (continue / fine-tune) or one that `name` knows how to start from (e.g. hyper-bb from hyper).

    target: the freshly built model to be trained (the adapter may keep some of its parameters);
    default: `name` built with the file's configuration."""
    zoo_entry = entry(name)
    payload, _ = _read_weight_file(name, Path(path), also=zoo_entry.init_from)
    source = payload["model"]
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["network"].items()}
    if source != name:
        state = zoo_entry.init_from[source](state, target if target is not None else
                                            build_trainable(name, payload["config"]))
    if zoo_entry.fit_state is not None and target is not None:
        state = zoo_entry.fit_state(state, target)
    return state


def load_weight_card(path: Path) -> dict:
    """The model card a weight file carries (its training record)."""
    return dict(_load_weight_file(path)[0].get("card") or {})


def weight_file_model(path: Path) -> str:
    """The zoo model a weight file holds (what `--weights FILE` selects without `--model`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} not found")
    payload, _ = _load_weight_file(path)
    if payload.get("model") not in ZOO:
        raise WeightsError(f"{path} holds weights for model {payload.get('model')!r}, which this lic does not have")
    return payload["model"]


def weight_file_config(path: Path, name: str) -> dict:
    """The model configuration stored in a weight file that `name` can be trained from (see
    load_network_state)."""
    return dict(_read_weight_file(name, Path(path), also=entry(name).init_from)[0]["config"])


def load_codec(name: str, weights: Path | None = None, device: str = "cpu", compute: str = "auto") -> LoadedCodec:
    """compute: arithmetic of the transforms ('auto' = bf16 where native, else fp32)."""
    zoo_entry = entry(name)
    path = Path(weights) if weights is not None else default_weights_path(name)
    payload, raw = _read_weight_file(name, path)
    model = zoo_entry.build(payload["config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["network"].items()})
    codec = zoo_entry.codec(model, payload["coding"], device, compute)
    return LoadedCodec(name, codec, hashlib.sha256(raw).digest()[:HASH_BYTES], path, payload.get("card", {}))
