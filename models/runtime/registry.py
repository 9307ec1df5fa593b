"""Which models decode without torch: every family package whose ``runtime.py`` lists
``RUNTIMES`` (model name -> codec class) and ``ENCODER_PREFIXES`` (model name -> the parameters
only its encoder reads, for the weight id). A model decodes here when its class, the
graphs it names (``decode_graphs``: ``models/weights/graphs/<model>.<part>.onnx``) and the
weights a file names (installed or kept in ``models/weights/archive/``) are all present, and ONNX
Runtime is installed."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from pathlib import Path

from ..interface import LoadedCodec
from ..weight_reader import WEIGHTS_DIR, WeightArrays, WeightsError, archived_weight_file, read_weight_arrays
from .graphs import GraphMismatch, graph_path

MODELS_DIR = Path(__file__).resolve().parent.parent


@functools.cache
def runtime_modules() -> tuple:
    return tuple(importlib.import_module(f"models.{info.name}.runtime")
                 for info in pkgutil.iter_modules([str(MODELS_DIR)])
                 if info.ispkg and (MODELS_DIR / info.name / "runtime.py").is_file())


def runtime_class(model: str):
    for module in runtime_modules():
        if model in module.RUNTIMES:
            return module.RUNTIMES[model]
    return None


def encoder_prefixes(model: str) -> tuple[str, ...]:
    for module in runtime_modules():
        if model in module.ENCODER_PREFIXES:
            return module.ENCODER_PREFIXES[model]
    return ()


def available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


@functools.lru_cache(maxsize=4)
def weight_arrays(path: Path) -> WeightArrays:
    """A weight file's arrays, read (and hashed) once per process."""
    return read_weight_arrays(path, encoder_prefixes)


def weights_for(model: str, weights_id: bytes) -> Path | None:
    """The installed weight file of `model` if it is the one a file names, else the kept one."""
    installed = WEIGHTS_DIR / f"{model}.pt"
    if installed.is_file():
        arrays = weight_arrays(installed)
        if weights_id == arrays.weight_id or weights_id in arrays.aliases:
            return installed
    return archived_weight_file(model, weights_id, encoder_prefixes)


def graph_parts(model: str, encoding: bool = False) -> tuple[str, ...]:
    """The graphs a model's runtime class decodes with (and, encoding, those it also encodes with)."""
    cls = runtime_class(model)
    return tuple(cls.decode_graphs) + (tuple(cls.encode_graphs) if encoding else ())


@functools.cache
def load(model: str, path: Path, threads: int | None = None) -> LoadedCodec:
    """The runtime codec of a weight file; it encodes where the analysis graphs are here too and
    the file has the encoder's parameters."""
    arrays = weight_arrays(path)
    if arrays.model != model:
        raise WeightsError(f"{path} holds weights for {arrays.model}, not {model}")
    graphs = {part: graph_path(model, part).read_bytes() for part in graph_parts(model, encoding=True)
              if graph_path(model, part).is_file()}
    codec = runtime_class(model)(arrays, graphs, threads)
    return LoadedCodec(model, codec, arrays.weight_id, path, arrays.card, decoder_only=not codec.can_encode,
                       aliases=arrays.aliases)


def decoder_for(model: str, weights_id: bytes, threads: int | None = None, path: Path | None = None
                ) -> LoadedCodec | None:
    """A torch-free decoder of files naming these weights, or None where this model has none here
    (the caller falls back to torch). path: a weight file the user named (--weights), used where
    it holds these weights."""
    if not has_graphs(model):
        return None
    if path is None or not holds(path, weights_id):
        path = weights_for(model, weights_id)
    return None if path is None else loaded_or_none(model, path, threads)


def encoder_for(model: str, threads: int | None = None, path: Path | None = None) -> LoadedCodec | None:
    """A torch-free encoder with the installed weights of `model` (or the file `path`), or None
    where it has none."""
    path = Path(path) if path is not None else WEIGHTS_DIR / f"{model}.pt"
    if not has_graphs(model, encoding=True) or not path.is_file():
        return None
    loaded = loaded_or_none(model, path, threads, encoding=True)
    return None if loaded is None or loaded.decoder_only else loaded


def holds(path: Path, weights_id: bytes) -> bool:
    arrays = weight_arrays(Path(path))
    return weights_id == arrays.weight_id or weights_id in arrays.aliases


def weight_file_model(path: Path) -> str | None:
    """The model a weight file holds, read without torch, if this runtime codes it (else None)."""
    model = weight_arrays(Path(path)).model
    return model if runtime_class(model) is not None else None


def has_graphs(model: str, encoding: bool = False) -> bool:
    """ONNX Runtime is installed, the model has a runtime class and the graphs it decodes (and,
    encoding, encodes) with are here."""
    return available() and runtime_class(model) is not None and all(graph_path(model, part).is_file()
                                                                    for part in graph_parts(model, encoding))


def loaded_or_none(model: str, path: Path, threads: int | None, encoding: bool = False) -> LoadedCodec | None:
    """The runtime codec, or None where its graphs do not take these weights: the graphs it decodes
    (encoding: encodes) with are built now (codecs build them on first use), so that a mismatch
    falls back here."""
    try:
        loaded = load(model, Path(path), threads)
        check_graphs(loaded.codec, encoding and not loaded.decoder_only)
        return loaded
    except (GraphMismatch, KeyError):  # e.g. a --weights file of another configuration: torch codes it
        return None


def check_graphs(codec, encoding: bool) -> None:
    """Build the graphs a codec decodes (encoding: encodes) with; its own check_graphs where it has
    one (e.g. a graph per quality)."""
    if hasattr(codec, "check_graphs"):
        codec.check_graphs(encoding)
        return
    for part in codec.encode_graphs if encoding else codec.decode_graphs:
        getattr(codec, part)
