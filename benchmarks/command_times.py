"""Wall time and peak memory of whole `lic encode` / `lic decode` commands, one process per
command, as a user runs them (interpreter start, imports, weight loading, networks, coding, file
I/O), on the CPU's own kernels and with the kernels capped to AVX2 (as on an AVX2-only CPU).
`lic decode` runs twice: as installed (the torch-free runtime where the model has one) and with
`--engine torch`; and once over all the Kodak files in one command (batch throughput).

    python benchmarks/command_times.py --out docs/results-command-times.json

Imported models name their weight files (`lic import compressai`):

    python benchmarks/command_times.py --models mbt2018-mean,mbt2018 --batch-models none \
        --weights mbt2018-mean=runs/cai/mbt2018-mean-lic.pt --weights mbt2018=runs/cai/mbt2018-lic.pt
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cpm_kodak import cpu_name
from benchmarks.large_images import measured

# torch's kernels and numpy's OpenBLAS capped to AVX2; ONNX Runtime has no such switch (its kernels
# use what the CPU offers).
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell"}
MODELS = {"hyper-ctx": [], "hyper": [], "cpm": [], "flow": ["-q", "6"], "gc-c4": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", nargs="+", default=["kodim01.png", "kodim05.png", "kodim23.png"])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-models", default="hyper-ctx", help="models whose whole-Kodak decode is timed")
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=FILE",
                        help="a weight file for a model (imported models have none installed)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the table of an earlier run")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    lic = str(Path(sys.executable).with_name("lic"))
    weights = dict(value.split("=", 1) for value in args.weights)
    for model, path in weights.items():
        MODELS[model] = [*MODELS.get(model, []), "--weights", path]
    import_torch = [measured([sys.executable, "-c", "import torch"], os.environ)[0] for _ in range(3)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kernels, extra in (("native", {}), ("AVX2", AVX2)):
            env = {**os.environ, **extra}
            for model in args.models.split(","):
                runs = {"encode": [], "encode_torch": [], "decode": [], "decode_torch": []}
                for image in args.images:
                    coded, decoded = Path(folder) / "x.lic", Path(folder) / "x.png"
                    encode = [lic, "encode", str(args.kodak / image), "-o", str(coded), "--model", model,
                              *MODELS.get(model, []), "--force"]
                    runs["encode_torch"].append(measured([*encode, "--engine", "torch"], env))
                    runs["encode"].append(measured(encode, env))
                    decode = [lic, "decode", str(coded), "-o", str(decoded), "--force",
                              *(["--weights", weights[model]] if model in weights else [])]
                    runs["decode"].append(measured(decode, env))  # one file: the torch-free runtime where it applies
                    runs["decode_torch"].append(measured([*decode, "--engine", "torch"], env))
                row = {"kernels": kernels, "model": model}
                for what, values in runs.items():
                    row[f"{what}_seconds"] = statistics.median(v[0] for v in values)
                    row[f"{what}_peak_mb"] = max(v[1] for v in values) * 1024  # GiB -> MiB
                if model in args.batch_models.split(","):
                    row.update(batch_decode(lic, model, args.kodak, Path(folder), env))
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"command": "python " + " ".join(sys.argv), "cpu": cpu_name(), "cores": os.cpu_count(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "images": args.images,
              "import_torch_seconds": import_torch, "weights": weights, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


def batch_decode(lic: str, model: str, kodak: Path, folder: Path, env: dict) -> dict:
    """Seconds of one `lic decode` of every Kodak image's file: as installed (`--engine auto`, which
    takes torch for several files where it is installed), on the torch-free runtime and on torch."""
    coded, decoded = folder / "batch-lic", folder / "batch-png"
    coded.mkdir(exist_ok=True)
    decoded.mkdir(exist_ok=True)
    sources = sorted(str(path) for path in kodak.glob("*.png"))
    measured([lic, "encode", *sources, "-o", f"{coded}/", "--model", model, *MODELS.get(model, []), "--force"], env)
    files = sorted(str(path) for path in coded.glob("*.lic"))
    command = [lic, "decode", *files, "-o", f"{decoded}/", "--force"]
    return {"batch_images": len(files), "batch_decode_seconds": measured(command, env)[0],
            "batch_decode_onnx_seconds": measured([*command, "--engine", "onnx"], env)[0],
            "batch_decode_torch_seconds": measured([*command, "--engine", "torch"], env)[0]}


def markdown(result: dict) -> str:
    lines = [f"Command: `{result['command']}` — {result['cpu']}, {result['cores']} cores, {result['date']}; "
             f"median over {', '.join(result['images'])}. One process per command: start-up, imports, weight "
             "loading, networks, entropy coding and file I/O. AVX2: the same CPU with its kernels capped "
             "(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`), fp32, as on an "
             "AVX2-only CPU (numpy's OpenBLAS too: `OPENBLAS_CORETYPE=Haswell`; ONNX Runtime has no such switch)."
             + (f" `python -c \"import torch\"` alone, same run: "
                f"{statistics.median(result['import_torch_seconds']):.2f} s (median of "
                f"{len(result['import_torch_seconds'])})." if result.get("import_torch_seconds") else ""),
             "",
             "| model | kernels | `lic encode` (s) | with `--engine torch` (s) | `lic decode` (s) | with "
             "`--engine torch` (s) | peak RSS encode / decode / decode with torch (MB) |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        cells = [f"{row[key]:.2f}" if key in row else "–" for key in
                 ("encode_seconds", "encode_torch_seconds", "decode_seconds", "decode_torch_seconds")]
        torch_mb = f" / {row['decode_torch_peak_mb']:.0f}" if "decode_torch_peak_mb" in row else ""
        lines.append(f"| {row['model']} | {row['kernels']} | " + " | ".join(cells)
                     + f" | {row['encode_peak_mb']:.0f} / {row['decode_peak_mb']:.0f}{torch_mb} |")
    batches = [row for row in result["rows"] if "batch_decode_seconds" in row]
    if batches:
        lines += ["", "Batch: one `lic decode` of all files (24 Kodak images):", "",
                  "| model | kernels | `lic decode` (s) | `--engine onnx` (s) | `--engine torch` (s) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {row['model']} | {row['kernels']} | {row['batch_decode_seconds']:.2f} | "
                  f"{row.get('batch_decode_onnx_seconds', float('nan')):.2f} | "
                  f"{row['batch_decode_torch_seconds']:.2f} |" for row in batches]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
