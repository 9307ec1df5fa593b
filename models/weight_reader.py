"""Weight files read without torch and without running pickled code.

A `.pt` file is a zip archive: `data.pkl` (a pickle of the payload) and one raw little-endian
storage per tensor under `data/`. ``read_weights`` unpickles `data.pkl` with an unpickler that
admits only what a weight file holds (plain containers, tensor rebuilds, storage types) and
refuses any other global, so a crafted file cannot execute code; tensors become numpy arrays.
Used by the decode-only path, which must not import torch, and for checking files from users.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STORAGE_DTYPES = {
    "HalfStorage": np.float16, "FloatStorage": np.float32, "DoubleStorage": np.float64,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafeWeightsError(ValueError):
    """A weight file holds something other than plain data and tensors (or is not a .pt archive)."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_unused) -> np.ndarray:
    """A tensor as torch rebuilds it from its storage: a strided view, copied to a C-ordered array."""
    if not size:
        return np.array(storage[offset])  # 0-d, e.g. batch norm's step count
    item = storage.itemsize
    end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else offset
    if end > len(storage) or offset < 0:
        raise UnsafeWeightsError("a tensor reaches past its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * item for s in stride])
    return np.array(view, order="C")


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeWeightsError(f"refuses {module}.{name}: a weight file holds only data and tensors")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafeWeightsError("unknown persistent object")
        _, kind, key, _location, count = pid
        try:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
        except KeyError:
            raise UnsafeWeightsError(f"storage {key} is missing") from None
        array = np.frombuffer(raw, dtype=kind.dtype.newbyteorder("<"))
        if len(array) < count:
            raise UnsafeWeightsError(f"storage {key} is shorter than it says")
        return array[:count]


def read_weights(path: Path | io.BytesIO) -> dict:
    """The payload of a weight file (a path or its bytes in a stream), tensors as numpy arrays."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UnsafeWeightsError(f"not a .pt archive ({type(error).__name__})") from None
    with archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise UnsafeWeightsError("not a .pt archive (no single data.pkl)")
        prefix = pickles[0].rsplit("/", 1)[0]
        if archive.namelist().count(f"{prefix}/byteorder") and archive.read(f"{prefix}/byteorder") != b"little":
            raise UnsafeWeightsError("big-endian weight files are not supported")
        try:
            return _Unpickler(archive.read(pickles[0]), archive, prefix).load()
        except UnsafeWeightsError:
            raise
        except Exception as error:
            raise UnsafeWeightsError(f"unreadable pickle ({type(error).__name__})") from None


ID_BYTES = 8
ID_DOMAIN = b"lic weight id 1\n"


def canonical_id(groups: dict[str, dict[str, tuple[str, tuple[int, ...], bytes]]]) -> bytes:
    """The weight id (docs/format.md) of decoder tensors given as {group: {name: (dtype name, shape,
    little-endian C-order bytes)}}, groups "network" then "coding"."""
    digest = hashlib.sha256(ID_DOMAIN)
    for group in ("network", "coding"):
        tensors = groups[group]
        for name in sorted(tensors):
            dtype, shape, raw = tensors[name]
            digest.update(f"{group}/{name}\0{dtype}\0{list(shape)}\0".encode())
            digest.update(raw)
    return digest.digest()[:ID_BYTES]


def array_entry(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    array = np.asarray(array, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    stored = array.astype(np.uint8) if array.dtype == np.bool_ else array.astype(array.dtype.newbyteorder("<"))
    return str(array.dtype), tuple(int(n) for n in array.shape), stored.tobytes()


def weight_id_of_arrays(network: dict[str, np.ndarray], coding: dict[str, np.ndarray],
                        encoder_prefixes: tuple[str, ...]) -> bytes:
    """The weight id (docs/format.md) of a payload read by ``read_weights``: only the network parameters
    outside the encoder's prefixes, and every coding tensor."""
    return canonical_id({
        "network": {name: array_entry(a) for name, a in network.items() if not name.startswith(encoder_prefixes)},
        "coding": {name: array_entry(a) for name, a in coding.items()},
    })


# ---------------------------------------------------------------------------------------------
# lic weight files (models/weight_files.py writes them and gives torch its tensors)
# ---------------------------------------------------------------------------------------------
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
class WeightArrays:
    """A weight file's payload with its identity (see models/weight_files.py): its tensors as numpy
    arrays (read_weight_arrays), or as torch tensors (weight_files.read_weight_file)."""

    path: Path
    model: str
    config: dict
    network: dict[str, Any]
    coding: dict[str, Any]
    card: dict
    weight_id: bytes
    aliases: frozenset[bytes] = field(default_factory=frozenset)  # ids of files written before the tensor ids
    decoder_only: bool = False


def raw_file_id(raw: bytes) -> bytes:
    """The id that files written before the tensor ids give their weights: SHA-256 of the file's bytes."""
    return hashlib.sha256(raw).digest()[:ID_BYTES]


def legacy_ids(model: str) -> dict[bytes, bytes]:
    """Raw-bytes ids of weight files lic has shipped for `model` -> their tensor ids."""
    if not LEGACY_IDS.is_file():
        return {}
    table = json.loads(LEGACY_IDS.read_text()).get(model, {})
    return {bytes.fromhex(old): bytes.fromhex(new) for old, new in table.items()}


def read_weight_arrays(path: Path, encoder_prefixes: Callable[[str], tuple[str, ...]]) -> WeightArrays:
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
    aliases = {raw_file_id(raw)} | {old for old, new in legacy_ids(model).items() if new == identity}
    return WeightArrays(Path(path), model, dict(payload.get("config") or {}), arrays["network"], arrays["coding"],
                      dict(payload.get("card") or {}), identity, frozenset(aliases - {identity}),
                      payload.get("version") == DECODER_ONLY_VERSION)


def archive_name(model: str, identity: bytes) -> str:
    return f"{model}-{identity.hex()}.pt"


def archived_weight_file(model: str, identity: bytes, encoder_prefixes: Callable[[str], tuple[str, ...]],
                         folder: Path | None = None) -> Path | None:
    """The kept weight file (or decoder part) of `model` whose id or earlier id is `identity`."""
    canonical = legacy_ids(model).get(identity, identity)
    path = Path(folder or ARCHIVE_DIR) / archive_name(model, canonical)
    if not path.is_file():
        return None
    if read_weight_arrays(path, encoder_prefixes).weight_id != canonical:
        raise WeightsError(f"{path} does not hold the weights its name says")
    return path
