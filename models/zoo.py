"""The registry: every model of the zoo, found in the family packages, and their weight files.

A family is one package in ``models/`` whose ``family.py`` lists its models in ``ENTRIES``
(``models.interface.ZooEntry``: builder, codec, weight file, operating points, training driver and
options). This module imports every such package it finds and knows none of them by name; the
CLI, the benchmarks and the conformance tests work from the entries. Weight files and their ids:
``models.weight_files``.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

from torch import nn

from . import defaults
from .interface import LoadedCodec, Training, ZooEntry
from .weight_files import (
    WEIGHTS_DIR,
    WeightFile,
    WeightsError,
    archived_weight_file,
    read_weight_file,
    write_weight_file,
)

__all__ = [
    "DEFAULT_MODEL",
    "ZOO",
    "LoadedCodec",
    "Training",
    "WeightsError",
    "ZooEntry",
    "build_trainable",
    "entry",
    "export_weights",
    "load_codec",
    "load_network_state",
    "register",
]

ZOO: dict[str, ZooEntry] = {}
DEFAULT_MODEL = defaults.DEFAULT_MODEL


def register(zoo_entry: ZooEntry) -> None:
    """Add a model to the zoo (discovery does this for every family; a test registers a toy one)."""
    if zoo_entry.name in ZOO:
        raise ValueError(f"model {zoo_entry.name!r} is already registered")
    ZOO[zoo_entry.name] = zoo_entry


def family_modules(folder: Path, package: str) -> list:
    """The family.py module of every family package in `folder` (importable as `package`.NAME),
    in name order."""
    return [importlib.import_module(f"{package}.{info.name}.family")
            for info in pkgutil.iter_modules([str(folder)])
            if info.ispkg and (Path(folder) / info.name / "family.py").is_file()]


def discover_families(folder: Path, package: str) -> list[ZooEntry]:
    """The ENTRIES of every family package in `folder`."""
    return [item for module in family_modules(folder, package) for item in module.ENTRIES]


# `lic import SOURCE`: source -> (architectures, importer(architecture, checkpoint paths) ->
# (zoo model name, network, card)); a family offers one in its family.py's IMPORTERS.
IMPORTERS: dict[str, tuple[tuple[str, ...], Callable]] = {}


def _register_families() -> None:
    """Register every family in models/: the default model first (it heads every listing), then the
    shipped models, then those whose weights come from training or importing."""
    modules = family_modules(Path(__file__).parent, __package__)
    entries = [item for module in modules for item in module.ENTRIES]
    for item in sorted(entries, key=lambda item: (item.name != DEFAULT_MODEL, not item.shipped)):
        register(item)
    for module in modules:
        IMPORTERS.update(getattr(module, "IMPORTERS", {}))


def entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(ZOO))})")
    return ZOO[name]


def models_with(**capabilities) -> list[str]:
    """Names of the models whose codecs have these capabilities, e.g. models_with(selective=True)."""
    return [name for name, item in ZOO.items()
            if all(getattr(item.codec.capabilities, key) == value for key, value in capabilities.items())]


def auto_candidates(base: str) -> list[str]:
    """`base` and its variants whose weight files are here, the order `--model auto` tries them."""
    return [base] + [name for name, item in ZOO.items()
                     if item.variant_of == base and default_weights_path(name).exists()]


def build_trainable(name: str, config: dict | None = None) -> nn.Module:
    zoo_entry = entry(name)
    return zoo_entry.build({**zoo_entry.config, **(config or {})})


def config_as_dict(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def default_weights_path(name: str) -> Path:
    return WEIGHTS_DIR / entry(name).weight_file


def export_weights(model: nn.Module, name: str, path: Path, card: dict | None = None, half: bool = True) -> Path:
    """Write a weight file: the network parameters (fp16, or as they are with half=False) plus the
    frozen coding tables derived from exactly those."""
    stored = {k: v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu()
              for k, v in model.state_dict().items()}
    rounded = build_trainable(name, config_as_dict(model.config))
    rounded.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in stored.items()})
    return write_weight_file(path, name, config_as_dict(model.config), stored, entry(name).freeze(rounded.eval()),
                             card)


def _weight_file_of(name: str, path: Path, also: tuple[str, ...] = ()) -> WeightFile:
    """The weight file at path, which must hold model `name` (or one of `also`)."""
    if not path.is_file():
        hint = ""
        if not entry(name).shipped:
            hint = (f" (not trained yet: lic train --model {name} --data DIR)" if entry(name).training.driver
                    else " (no weights ship with lic: make a weight file with lic import, then pass --weights)")
        raise WeightsError(f"weights for model {name!r} not found at {path}{hint}")
    weights = read_weight_file(path, _encoder_prefixes)
    if weights.model != name and weights.model not in also:
        raise WeightsError(f"{path} holds weights for model {weights.model!r}, not {name!r}")
    return weights


def _encoder_prefixes(model: str) -> tuple[str, ...]:
    return ZOO[model].encoder_prefixes if model in ZOO else ()


def load_network_state(path: Path, name: str, target: nn.Module | None = None) -> dict:
    """The float32 network parameters of a weight file, for training `name` from it: the same model
    (continue / fine-tune) or one that `name` knows how to start from.

    target: the freshly built model to be trained (the adapter may keep some of its parameters);
    default: `name` built with the file's configuration."""
    zoo_entry = entry(name)
    weights = _weight_file_of(name, Path(path), also=tuple(zoo_entry.init_from))
    if weights.decoder_only:
        raise WeightsError(f"{path} holds only a decoder: it cannot start a training run")
    state = {k: v.float() if v.is_floating_point() else v for k, v in weights.network.items()}
    if weights.model != name:
        state = zoo_entry.init_from[weights.model](state, target if target is not None else
                                                   build_trainable(name, weights.config))
    if zoo_entry.fit_state is not None and target is not None:
        state = zoo_entry.fit_state(state, target)
    return state


def load_weight_card(path: Path) -> dict:
    """The model card a weight file carries (its training record)."""
    return dict(read_weight_file(Path(path), _encoder_prefixes).card)


def weight_file_model(path: Path) -> str:
    """The zoo model a weight file holds (what `--weights FILE` selects without `--model`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} not found")
    model = read_weight_file(path, _encoder_prefixes).model
    if model not in ZOO:
        raise WeightsError(f"{path} holds weights for model {model!r}, which this lic does not have")
    return model


def weight_file_config(path: Path, name: str) -> dict:
    """The model configuration stored in a weight file that `name` can be trained from (see
    load_network_state)."""
    return dict(_weight_file_of(name, Path(path), also=tuple(entry(name).init_from)).config)


def load_codec(name: str, weights: Path | None = None, device: str = "cpu", compute: str = "auto") -> LoadedCodec:
    """A model's codec from its installed weight file (or `weights`). compute: arithmetic of the
    transforms ('auto' = bf16 where native, else fp32)."""
    path = Path(weights) if weights is not None else default_weights_path(name)
    return _codec_of(_weight_file_of(name, path), device, compute)


def load_archived_codec(name: str, weights_id: bytes, device: str = "cpu", compute: str = "auto") -> LoadedCodec | None:
    """The codec of a replaced weight file that lic keeps for decoding (models/weights/archive/),
    or None if none has this id."""
    path = archived_weight_file(name, weights_id, _encoder_prefixes)
    return None if path is None else _codec_of(_weight_file_of(name, path), device, compute)


def _codec_of(weights: WeightFile, device: str, compute: str) -> LoadedCodec:
    zoo_entry = entry(weights.model)
    model = zoo_entry.build(weights.config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in weights.network.items()}
    missing, unexpected = model.load_state_dict(state, strict=not weights.decoder_only)
    if unexpected or any(not key.startswith(zoo_entry.encoder_prefixes) for key in missing):
        raise WeightsError(f"{weights.path} does not match model {weights.model}'s network")
    codec = zoo_entry.codec(model, weights.coding, device, compute)
    return LoadedCodec(weights.model, codec, weights.weight_id, weights.path, weights.card, weights.decoder_only,
                       weights.aliases)


_register_families()
