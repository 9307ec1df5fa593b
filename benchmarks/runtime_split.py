"""Where the time of a torch-free `lic decode` goes, and how large a decode-only environment is.

One fresh process per image and model (as a user's command), timing its stages: importing lic's
decoder (numpy, constriction, ONNX Runtime), reading the weight file, building the decoder
(fixed-point layers, the ONNX Runtime session), entropy decoding (everything that selects tables,
all in numpy: decode_symbols), the networks on ONNX Runtime (a whole decode less its entropy
decoding), and writing the PNG.

    python benchmarks/runtime_split.py --out docs/results-runtime-split.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.command_times import MODELS
from benchmarks.cpm_kodak import cpu_name

STAGES = r"""
import json, sys, time
started = time.perf_counter()
from bitstream.container import unpack
from lic_cli.codec import CodecSession, coded_sections
from lic_cli.imageio import encode_image_file, ImageData
from models.interface import Geometry
from models.runtime import registry
imported = time.perf_counter()
container = unpack(open(sys.argv[1], "rb").read())
path = registry.weights_for(container.model_id, container.weights_id)
registry.weight_arrays(path)
read = time.perf_counter()
loaded = registry.load(container.model_id, path)
built = time.perf_counter()
codec, geometry = loaded.codec, Geometry(container.height, container.width)
sections = coded_sections(container, loaded)
codec.decode_symbols(sections, geometry, container.quality_value)
entropy = time.perf_counter()
pixels = codec.decode(sections, geometry, container.quality_value)
decoded = time.perf_counter()
encode_image_file(ImageData(pixels.transpose(1, 2, 0).copy()), ".png")
written = time.perf_counter()
print(json.dumps({"imports": imported - started, "weights read (and hashed)": read - imported,
                  "decoder built": built - read, "entropy decoding": entropy - built,
                  "networks (ONNX Runtime)": (decoded - entropy) - (entropy - built),
                  "PNG written": written - decoded, "torch imported": "torch" in sys.modules}))
"""
DECODE_ONLY = ("numpy", "constriction", "PIL", "click", "rich", "onnxruntime")


def package_bytes(name: str) -> int:
    spec = importlib.util.find_spec(name)
    folder = Path(spec.origin).parent
    libs = folder.parent / f"{name}.libs"  # manylinux wheels keep their shared libraries beside the package
    return sum(path.stat().st_size for root in (folder, libs) if root.exists() for path in root.rglob("*")
               if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", nargs="+", default=["kodim01.png", "kodim05.png", "kodim23.png"])
    parser.add_argument("--models", default="hyper-ctx,hyper,cpm,flow,gc-c4")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the table of an earlier run")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    lic = str(Path(sys.executable).with_name("lic"))
    models = {}
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models.split(","):
            runs = []
            for image in args.images:
                coded = Path(folder) / "x.lic"
                subprocess.run([lic, "encode", str(args.kodak / image), "-o", str(coded), "--model", model,
                                *MODELS.get(model, []), "--force"], check=True)
                out = subprocess.run([sys.executable, "-c", STAGES, str(coded)], check=True, capture_output=True,
                                     text=True)
                runs.append(json.loads(out.stdout))
            models[model] = {"stage_seconds": {key: statistics.median(run[key] for run in runs)
                                               for key in runs[0] if key != "torch imported"},
                             "torch_imported": any(run["torch imported"] for run in runs)}
    sizes = {name: package_bytes(name) for name in (*DECODE_ONLY, "torch")}
    result = {"command": "python " + " ".join(sys.argv), "cpu": cpu_name(), "cores": os.cpu_count(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "images": args.images, "models": models,
              "package_bytes": sizes}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


def markdown(result: dict) -> str:
    """The table of a run: seconds per stage and model, torch imported or not."""
    stages = list(next(iter(result["models"].values()))["stage_seconds"])
    lines = [f"| model | {' | '.join(stages)} | sum | torch imported |", "|---" * (len(stages) + 3) + "|"]
    for model, row in result["models"].items():
        seconds = row["stage_seconds"]
        lines.append(f"| {model} | " + " | ".join(f"{seconds[stage]:.2f}" for stage in stages)
                     + f" | {sum(seconds.values()):.2f} | {'yes' if row['torch_imported'] else 'no'} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
