"""Float transforms on ONNX Runtime, from graphs stored without their weights.

A graph file (``models/weights/graphs/<model>.<part>.onnx``) is what ``export_graph`` writes from
the torch module when a model ships: the operators, with every parameter declared as an external
initializer named as in the weight file (``g_s.0.weight``, ...) and no data. ``Graph`` binds the
weight file's arrays to those names when it loads (``SessionOptions.add_external_initializers``),
so the weights exist once, in the weight file, and the network is defined once, by torch.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..defaults import SYNTHESIS_THREADS
from ..weight_reader import WEIGHTS_DIR

GRAPHS_DIR = WEIGHTS_DIR / "graphs"
EXTERNAL = "lic-weight-file"  # the location every initializer names: the weight file, bound at load
SHAPES_KEY = "lic.initializer_shapes"  # metadata: {name: shape} of the initializers the graph expects


def synthesis_threads() -> int:
    """The thread count of every synthesis graph: SYNTHESIS_THREADS as on the torch path, but no
    more threads than cores (oversubscribed, they cost ~10% of the synthesis on 2 cores). ONNX
    Runtime's kernels as these graphs use them (no NCHWc layouts) give the same outputs on any
    thread count: tests/test_runtime.py checks each family's graph on 1 and 4 threads."""
    return max(1, min(SYNTHESIS_THREADS, os.cpu_count() or 1))


class GraphMismatch(ValueError):
    """The weights do not have the tensors (names, shapes) the graph was exported for."""


def graph_path(model: str, part: str, folder: Path | None = None) -> Path:
    return Path(folder or GRAPHS_DIR) / f"{model}.{part}.onnx"


class Graph:
    """An ONNX Runtime session of a weightless graph, its initializers bound from `arrays`
    (name -> array; floats as the graph's fp32, fp16 ones widened; integers as int64)."""

    def __init__(self, graph: bytes, arrays: dict[str, np.ndarray], threads: int | None = None):
        import json

        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        # Without the layout transformations of ORT_ENABLE_ALL (NCHWc): a command runs the graph once,
        # and their set-up costs more than they save in one run.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        # Threads sleep between operators instead of spinning: the synthesis runs on a fixed thread
        # count (pixels must not depend on the machine), often more than the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.arrays = arrays  # what it was built with (another thread count: Graph(graph, g.arrays, n))
        self._values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(
            array, dtype=np.float32 if array.dtype.kind == "f" else np.int64))
            for array in arrays.values()]  # kept alive as long as the session (integers: e.g. permutations)
        options.add_external_initializers(list(arrays), self._values)
        try:
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime's own error types: e.g. weights of another shape
            raise GraphMismatch(f"the graph does not take these weights ({error})") from None
        expected = json.loads(self.session.get_modelmeta().custom_metadata_map.get(SHAPES_KEY, "{}"))
        given = {name: list(array.shape) for name, array in arrays.items()}
        if expected != given:
            raise GraphMismatch("the weights do not have the tensors this graph was exported for")
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


def parameters(network: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays of a weight file's network whose names start with `prefix` (one graph's), less
    batch-norm bookkeeping that no graph computes with."""
    return {name: array for name, array in network.items()
            if name.startswith(prefix) and not name.endswith(".num_batches_tracked")}


def export_graph(module, example, prefix: str, path: Path) -> Path:
    """Write `module`'s graph without weights (torch and onnx needed here, at shipping time only):
    its parameters become external initializers named `prefix` + their names in the module."""
    import json
    import warnings

    import onnx
    import torch
    from onnx.external_data_helper import set_external_data

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter (deprecated, but it keeps parameter names)
        torch.onnx.export(module.float().eval(), (example,), buffer, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"},
                                        "y": {0: "batch", 2: "height", 3: "width"}},
                          do_constant_folding=False, keep_initializers_as_inputs=True, dynamo=False,
                          opset_version=17)  # (as inputs: the exporter then keeps equal parameters apart)
    graph = onnx.load_from_string(buffer.getvalue())
    parameters = {name for name, _ in module.named_parameters()} | {name for name, _ in module.named_buffers()}
    declared = {initializer.name for initializer in graph.graph.initializer}
    used = {name for node in graph.graph.node for name in node.input} & parameters
    if used - declared:
        raise ValueError(f"graph uses parameters it does not declare: {sorted(used - declared)[:3]}")
    for initializer in graph.graph.initializer:
        if initializer.name not in parameters:
            raise ValueError(f"graph holds a tensor that is not a parameter: {initializer.name}")
        initializer.name = prefix + initializer.name
        set_external_data(initializer, location=EXTERNAL)
        initializer.ClearField("raw_data")
        initializer.data_location = onnx.TensorProto.EXTERNAL
    for node in graph.graph.node:
        node.input[:] = [prefix + name if name in parameters else name for name in node.input]
    inputs = [value for value in graph.graph.input if value.name not in parameters]
    del graph.graph.input[:]
    graph.graph.input.extend(inputs)
    shapes = {initializer.name: list(initializer.dims) for initializer in graph.graph.initializer}
    graph.metadata_props.add(key=SHAPES_KEY, value=json.dumps(shapes, sort_keys=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(graph.SerializeToString())
    return path
