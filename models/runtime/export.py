"""Write the weightless graphs of shipped models (run when a model ships; needs torch and onnx):

    python -m models.runtime.export hyper-ctx hyper

Each family's family.py names, in ``GRAPHS``, the module of a model that the runtime runs on ONNX
Runtime and an example input; the graph goes to models/weights/graphs/<model>.<part>.onnx.
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
    return [export_graph(module, example, prefix, graph_path(model, part, folder))
            for part, (module, example, prefix) in graph_makers(model)(network).items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    zoo = importlib.import_module("models.zoo")
    for model in args.models:
        loaded = zoo.load_codec(model, compute="fp32")
        for path in export_model_graphs(model, loaded.codec.model):
            print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
