"""Wall time and peak memory of whole `lic encode` / `lic decode` commands, one process per
command, as a user runs them (interpreter start, imports, weight loading, networks, coding, file
I/O), on the CPU's own kernels and with the kernels capped to AVX2 (as on an AVX2-only CPU).

    python benchmarks/command_times.py --out docs/results-command-times.json
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

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
MODELS = {"hyper-ctx": [], "hyper": [], "cpm": [], "flow": ["-q", "6"], "gc-c4": []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", nargs="+", default=["kodim01.png", "kodim05.png", "kodim23.png"])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path, metavar="JSON", help="print the table of an earlier run")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    lic = str(Path(sys.executable).with_name("lic"))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kernels, extra in (("native", {}), ("AVX2", AVX2)):
            env = {**os.environ, **extra}
            for model in args.models.split(","):
                runs = {"encode": [], "decode": []}
                for image in args.images:
                    coded, decoded = Path(folder) / "x.lic", Path(folder) / "x.png"
                    encode = [lic, "encode", str(args.kodak / image), "-o", str(coded), "--model", model,
                              *MODELS.get(model, []), "--force"]
                    runs["encode"].append(measured(encode, env))
                    runs["decode"].append(measured([lic, "decode", str(coded), "-o", str(decoded), "--force"], env))
                row = {"kernels": kernels, "model": model}
                for what, values in runs.items():
                    row[f"{what}_seconds"] = statistics.median(v[0] for v in values)
                    row[f"{what}_peak_mb"] = max(v[1] for v in values) * 1024  # GiB -> MiB
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"command": "python " + " ".join(sys.argv), "cpu": cpu_name(), "cores": os.cpu_count(),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "images": args.images, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


def markdown(result: dict) -> str:
    lines = [f"Command: `{result['command']}` — {result['cpu']}, {result['cores']} cores, {result['date']}; "
             f"median over {', '.join(result['images'])}. One process per command: start-up, imports, weight "
             "loading, networks, entropy coding and file I/O. AVX2: the same CPU with its kernels capped "
             "(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`), fp32, as on an "
             "AVX2-only CPU.", "",
             "| model | kernels | `lic encode` (s) | `lic decode` (s) | peak RSS encode / decode (MB) |",
             "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['model']} | {row['kernels']} | {row['encode_seconds']:.2f} | {row['decode_seconds']:.2f} "
                     f"| {row['encode_peak_mb']:.0f} / {row['decode_peak_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
