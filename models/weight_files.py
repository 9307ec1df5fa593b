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

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from .weight_reader import (  # noqa: F401 (re-exported: where weight files are, their ids and errors)
    ARCHIVE_DIR,
    DECODER_ONLY_VERSION,
    LEGACY_IDS,
    READABLE_WEIGHTS_VERSIONS,
    WEIGHTS_DIR,
    WEIGHTS_FORMAT,
    WEIGHTS_VERSION,
    WeightArrays,
    WeightsError,
    archive_name,
    archived_weight_file,
    legacy_ids,
    raw_file_id,
    read_weight_arrays,
)

WeightFile = WeightArrays  # with torch tensors, as read_weight_file returns it


def decoder_tensors(network: dict[str, torch.Tensor], encoder_prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The network parameters the decoder reads: all but those under the encoder's prefixes."""
    return {name: tensor for name, tensor in network.items() if not name.startswith(encoder_prefixes)}


def read_weight_file(path: Path, encoder_prefixes: Callable[[str], tuple[str, ...]]) -> WeightFile:
    """An existing lic weight file of a version this lic reads, its tensors as torch tensors
    (``weight_reader.read_weight_arrays`` reads it; see there)."""
    arrays = read_weight_arrays(path, encoder_prefixes)
    network, coding = ({name: torch.from_numpy(array) for name, array in group.items()}
                       for group in (arrays.network, arrays.coding))
    return dataclasses.replace(arrays, network=network, coding=coding)


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


