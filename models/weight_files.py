"""Weight files, and the weight id that names them in every coded file.

A weight file is a ``torch.save``d dict of plain types and tensors, loaded with
``weights_only=True`` (no unpickling of arbitrary objects)::

    {"format": "lic-weights", "version": 2, "model": name, "config": {...},
     "network": {param: fp16 tensor}, "coding": {name: exact tensor}, "card": {...}}

Version 2 stores probability-table counts as 16-bit patterns (``models.core.entropy``); version 1
files (int32 counts) still load. Version 3 is a *decoder-only* file (``"part": "decoder"``): the
network without the parameters only the encoder reads, kept so that files written with a replaced
weight file still decode.

The **weight id** (8 bytes, in every .lic header) is the SHA-256 of the canonical decoder tensors:
each network parameter the decoder reads and each coding tensor, by name, with its dtype, shape and
bytes. Re-saving, converting or re-carding a weight file, or cutting it down to its decoder,
changes nothing. Files written before this scheme name their weights by the SHA-256 of the raw
``.pt`` bytes: ``weights/ids.json`` maps those ids of every weight file lic has shipped to the
tensor ids, and a file given with ``--weights`` also answers to its own raw-bytes id.

When a shipped weight file is replaced, the old one (or its decoder part) moves to
``weights/archive/<model>-<id>.pt``; decoding looks there when a file names weights other than
the installed ones (docs/models.md, "Old files").
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .weight_reader import ID_BYTES, UnsafeWeightsError, read_weights, weight_id_of_arrays

WEIGHTS_DIR = Path(__file__).parent / "weights"
ARCHIVE_DIR = WEIGHTS_DIR / "archive"
LEGACY_IDS = WEIGHTS_DIR / "ids.json"
WEIGHTS_FORMAT = "lic-weights"
WEIGHTS_VERSION = 2
DECODER_ONLY_VERSION = 3
READABLE_WEIGHTS_VERSIONS = (1, 2, 3)


class WeightsError(ValueError):
    """A weight file is missing, foreign or does not match the model."""


@dataclass(frozen=True)
class WeightFile:
    path: Path
    model: str
    config: dict
    network: dict[str, torch.Tensor]
    coding: dict[str, torch.Tensor]
    card: dict
    weight_id: bytes
    aliases: frozenset[bytes] = field(default_factory=frozenset)  # ids of files written before the tensor ids
    decoder_only: bool = False


def decoder_tensors(network: dict[str, torch.Tensor], encoder_prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The network parameters the decoder reads: all but those under the encoder's prefixes."""
    return {name: tensor for name, tensor in network.items() if not name.startswith(encoder_prefixes)}


def raw_file_id(raw: bytes) -> bytes:
    """The id that files written before the tensor ids give their weights: SHA-256 of the file's bytes."""
    return hashlib.sha256(raw).digest()[:ID_BYTES]


def legacy_ids(model: str) -> dict[bytes, bytes]:
    """Raw-bytes ids of weight files lic has shipped for `model` -> their tensor ids."""
    if not LEGACY_IDS.is_file():
        return {}
    table = json.loads(LEGACY_IDS.read_text()).get(model, {})
    return {bytes.fromhex(old): bytes.fromhex(new) for old, new in table.items()}


def read_weight_file(path: Path, encoder_prefixes: Callable[[str], tuple[str, ...]]) -> WeightFile:
    """An existing lic weight file of a version this lic reads. encoder_prefixes: model name -> the
    network prefixes only its encoder reads (left out of the id)."""
    raw = Path(path).read_bytes()
    try:
        payload = read_weights(io.BytesIO(raw))  # the restricted reader: no pickled code runs
    except UnsafeWeightsError as error:
        raise WeightsError(f"{path} is not a loadable lic weight file ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path} is not a lic weight file")
    if payload.get("version") not in READABLE_WEIGHTS_VERSIONS:
        raise WeightsError(f"{path} has weight-file version {payload.get('version')}; this lic reads versions "
                           f"{', '.join(map(str, READABLE_WEIGHTS_VERSIONS))}")
    model = str(payload.get("model"))
    arrays = {group: dict(payload.get(group) or {}) for group in ("network", "coding")}
    identity = weight_id_of_arrays(arrays["network"], arrays["coding"], encoder_prefixes(model))
    network, coding = ({name: torch.from_numpy(array) for name, array in arrays[group].items()}
                       for group in ("network", "coding"))
    aliases = {raw_file_id(raw)} | {old for old, new in legacy_ids(model).items() if new == identity}
    return WeightFile(Path(path), model, dict(payload.get("config") or {}), network, coding,
                      dict(payload.get("card") or {}), identity, frozenset(aliases - {identity}),
                      payload.get("version") == DECODER_ONLY_VERSION)


def write_weight_file(path: Path, model: str, config: dict, network: dict[str, torch.Tensor],
                      coding: dict[str, torch.Tensor], card: dict | None = None, decoder_only: bool = False) -> Path:
    """Write a weight file atomically (a decoder-only one when `network` lacks the encoder's part)."""
    payload = {
        "format": WEIGHTS_FORMAT, "version": DECODER_ONLY_VERSION if decoder_only else WEIGHTS_VERSION,
        "model": model, "config": config, "network": network, "coding": coding, "card": dict(card or {}),
    }
    if decoder_only:
        payload["part"] = "decoder"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def write_decoder_part(weights: WeightFile, encoder_prefixes: tuple[str, ...], folder: Path | None = None) -> Path:
    """Keep a weight file's decoder for the files written with it: <folder>/<model>-<id>.pt, the
    parameters only the encoder reads left out (the id is unchanged by that)."""
    path = Path(folder or ARCHIVE_DIR) / archive_name(weights.model, weights.weight_id)
    card = {**weights.card, "decoder_only": "kept to decode files written with these weights"}
    write_weight_file(path, weights.model, weights.config, decoder_tensors(weights.network, encoder_prefixes),
                      weights.coding, card, decoder_only=True)
    return path


def archive_name(model: str, identity: bytes) -> str:
    return f"{model}-{identity.hex()}.pt"


def archived_weight_file(model: str, identity: bytes, encoder_prefixes: Callable[[str], tuple[str, ...]],
                         folder: Path | None = None) -> Path | None:
    """The kept weight file (or decoder part) of `model` whose id or earlier id is `identity`."""
    canonical = legacy_ids(model).get(identity, identity)
    path = Path(folder or ARCHIVE_DIR) / archive_name(model, canonical)
    if not path.is_file():
        return None
    if read_weight_file(path, encoder_prefixes).weight_id != canonical:
        raise WeightsError(f"{path} does not hold the weights its name says")
    return path
