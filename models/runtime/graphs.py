"""Float transforms on ONNX Runtime, from graphs stored without their weights.

A graph file (``models/weights/graphs/<model>.<part>.onnx``) is what ``export_graph`` writes from
the torch module when a model ships: the operators, with every parameter declared as an external
initializer named as in the weight file (``g_s.0.weight``, ...) and no data. ``Graph`` binds the
weight file's arrays to those names when it loads (``SessionOptions.add_external_initializers``),
so the weights exist once, in the weight file, and the network is defined once, by torch.

A graph exported with ``any_widths`` (imported models, whose widths differ per checkpoint) takes its
parameters as graph inputs of any size instead (ONNX Runtime replaces an initializer only by one of
the same shape): one graph per architecture serves every checkpoint.
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
ANY_WIDTHS_KEY = "lic.parameters_as_inputs"  # metadata: the parameters are inputs of any size ("1")
SUBPIXEL_KEY = "lic.subpixel_parameters"  # metadata: [weight, bias] names of transposed convolutions run
# as sub-pixel convolutions (their arrays are rearranged at binding: subpixel_arrays)


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
    """An ONNX Runtime session of a weightless graph, its parameters bound from `arrays`
    (name -> array; floats as the graph's fp32, fp16 ones widened; integers as int64): as
    initializers, or, for a graph exported with any_widths, fed as inputs to every run."""

    def __init__(self, graph: bytes, arrays: dict[str, np.ndarray], threads: int | None = None,
                 any_widths: bool = False):
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
        self.arrays, self.any_widths = arrays, any_widths  # what it was built with (for another thread count)
        if not any_widths:
            self._values = ort_values(arrays)  # kept alive as long as the session
            options.add_external_initializers(list(self._values), list(self._values.values()))
        try:
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ONNX Runtime's own error types: e.g. weights of another shape
            raise GraphMismatch(f"the graph does not take these weights ({error})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if (metadata.get(ANY_WIDTHS_KEY) == "1") != any_widths:
            raise GraphMismatch("the graph binds its parameters otherwise")
        if any_widths:
            self._values = ort_values(subpixel_arrays(arrays, json.loads(metadata.get(SUBPIXEL_KEY, "[]"))))
        expected = json.loads(metadata.get(SHAPES_KEY, "{}"))
        if any_widths:  # the names and ranks; the sizes are the weights' own
            expected = {name: len(shape) for name, shape in expected.items()}
            given = {name: array.ndim for name, array in arrays.items()}
        else:
            given = {name: list(array.shape) for name, array in arrays.items()}
        if expected != given:
            raise GraphMismatch("the weights do not have the tensors this graph was exported for")
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.any_widths:
            return self.session.run(None, {self.input: x})[0]
        import onnxruntime as ort

        try:
            return self.session.run_with_ort_values(
                None, {self.input: ort.OrtValue.ortvalue_from_numpy(x), **self._values})[0].numpy()
        except Exception as error:  # ONNX Runtime's own error types: sizes that do not fit together
            raise GraphMismatch(f"the graph does not take these weights ({error})") from None


def ort_values(arrays: dict[str, np.ndarray]) -> dict:
    """ONNX Runtime values of parameter arrays: floats as fp32 (fp16 ones widened), integers (e.g.
    permutations) as int64."""
    import onnxruntime as ort

    return {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(
        array, dtype=np.float32 if array.dtype.kind == "f" else np.int64)) for name, array in arrays.items()}


def subpixel_weight_array(weight: np.ndarray) -> np.ndarray:
    """models.core.layers.subpixel_weight in numpy: the (4 * out, in, 3, 3) weight of a 3x3
    convolution whose pixel shuffle equals a transposed convolution (kernel 5, stride 2, padding 2,
    output padding 1) of weight (in, out, 5, 5)."""
    padded = np.pad(np.asarray(weight, dtype=np.float32), ((0, 0), (0, 0), (1, 2), (1, 2)))
    offsets = np.arange(2)[:, None] + 3 - 2 * np.arange(-1, 2)[None, :]  # (phase a, d)
    taps = padded[:, :, offsets[:, None, :, None], offsets[None, :, None, :]]  # (in, out, a, b, dy, dx)
    return taps.transpose(1, 2, 3, 0, 4, 5).reshape(-1, weight.shape[0], 3, 3)


def subpixel_arrays(arrays: dict[str, np.ndarray], names: list[list[str]]) -> dict[str, np.ndarray]:
    """The arrays with each [weight, bias] in `names` rearranged for its sub-pixel convolution."""
    arrays = dict(arrays)
    for weight, bias in names:
        if weight in arrays and bias in arrays:
            arrays[weight] = subpixel_weight_array(arrays[weight])
            arrays[bias] = np.repeat(np.asarray(arrays[bias], dtype=np.float32), 4)
    return arrays


def parameters(network: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays of a weight file's network whose names start with `prefix` (one graph's), less
    batch-norm bookkeeping that no graph computes with."""
    return {name: array for name, array in network.items()
            if name.startswith(prefix) and not name.endswith(".num_batches_tracked")}


def export_graph(module, example, prefix: str, path: Path, any_widths: bool = False) -> Path:
    """Write `module`'s graph without weights (torch and onnx needed here, at shipping time only):
    its parameters become external initializers named `prefix` + their names in the module, or,
    with any_widths, inputs of any size (the input's channels too)."""
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
    if any_widths:
        parameters_as_inputs(graph)
        from ..core.layers import SubpixelConvolution

        subpixel = [[prefix + name + ".weight", prefix + name + ".bias"] for name, child in module.named_modules()
                    if isinstance(child, SubpixelConvolution)]
        graph.metadata_props.add(key=SUBPIXEL_KEY, value=json.dumps(subpixel))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(graph.SerializeToString())
    return path


def parameters_as_inputs(graph) -> None:
    """Turn a graph's (weightless) initializers into inputs of any size, and free its input's and
    output's channel counts: ONNX Runtime then takes parameters of any width, fed at every run."""
    from onnx import helper

    initializers = list(graph.graph.initializer)
    del graph.graph.initializer[:]
    for initializer in initializers:
        sizes = [f"{initializer.name}:{axis}" for axis in range(len(initializer.dims))]
        graph.graph.input.append(helper.make_tensor_value_info(initializer.name, initializer.data_type, sizes))
    for value in (graph.graph.input[0], *graph.graph.output):
        channels = value.type.tensor_type.shape.dim[1]
        channels.Clear()
        channels.dim_param = f"{value.name}:channels"
    del graph.graph.value_info[:]
    graph.metadata_props.add(key=ANY_WIDTHS_KEY, value="1")
