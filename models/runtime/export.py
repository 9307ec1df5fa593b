"""Write the weightless graphs of shipped models (run when a model ships; needs torch and onnx):

    python -m models.runtime.export hyper-ctx hyper

Each family's family.py names, in ``GRAPHS``, the modules of a model that the runtime runs on ONNX
Runtime: (module, example input, parameter prefix[, any_widths]) per part; the graph goes to
models/weights/graphs/<model>.<part>.onnx.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from .graphs import export_graph, graph_path


def graph_makers(model: str):
    from .. import zoo

    for module in zoo.family_modules(Path(zoo.__file__).parent, "models"):
        if model in getattr(module, "GRAPHS", {}):
            return module.GRAPHS[model]
    raise ValueError(f"model {model} has no graph to export")


def export_model_graphs(model: str, network, folder: Path | None = None) -> list[Path]:
    """The graphs of a built network of `model` (its parameters need not be trained)."""
    return [export_graph(module, example, prefix, graph_path(model, part, folder), *options)
            for part, (module, example, prefix, *options) in graph_makers(model)(network).items()]


def network_to_export(zoo, model: str):
    """The installed network of a model, or, for a model that ships no weights (imported ones, whose
    graphs take parameters of any width), its tiny configuration: no parameter value enters a graph."""
    if zoo.default_weights_path(model).is_file():
        return zoo.load_codec(model, compute="fp32").codec.model
    entry = zoo.entry(model)
    return entry.build(entry.tiny_config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    zoo = importlib.import_module("models.zoo")
    for model in args.models:
        for path in export_model_graphs(model, network_to_export(zoo, model)):
            print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
