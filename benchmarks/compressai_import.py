"""CompressAI models through `lic import compressai`, against CompressAI's own codec path.

CompressAI's trained weights cannot be downloaded here, so `train` makes small checkpoints of each
architecture with CompressAI's own classes and loss (crops of the training photos, a few hundred
steps, two qualities; one saved in the zoo's older key layout); `compare` imports them with the
real command and measures, on Kodak, in one process: the largest difference between lic's and
CompressAI's output of each transform, bytes of lic's files against the lengths of CompressAI's
compress() strings, PSNR of both decoders, encode/decode seconds, and whether 1 and 2 threads
decode lic's files alike.

    pip install --no-deps --target cai-site compressai==1.2.8 tqdm einops scipy
    PYTHONPATH=cai-site python benchmarks/compressai_import.py train --out runs/cai
    PYTHONPATH=cai-site python benchmarks/compressai_import.py compare --runs runs/cai \
        --out docs/results-compressai.json
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cpm_kodak import cpu_name
from lic_cli.imageio import list_images, load_rgb_array
from tests.compressai_support import compressai_models, elic_passes_against_compressai

ARCHITECTURES = {"bmshj2018-hyperprior": "ScaleHyperprior", "mbt2018-mean": "MeanScaleHyperprior",
                 "mbt2018": "JointAutoregressiveHierarchicalPriors", "cheng2020-anchor": "Cheng2020Anchor",
                 "elic2022-official": "Elic2022Official"}


def network(cai, arch: str, n: int, m: int):
    """CompressAI's network of an architecture (cheng2020-anchor has one width, M = N)."""
    cls = getattr(cai, ARCHITECTURES[arch])
    return cls(n) if arch == "cheng2020-anchor" else cls(n, m)


def hyper_part(net):
    """The module holding h_a, h_s and the entropy bottleneck (ELIC's is inside its latent codec)."""
    return net.latent_codec["hyper"] if hasattr(net, "latent_codec") else net
LAMBDAS = (0.0035, 0.0130)  # CompressAI's zoo qualities 2 and 4


def crops(paths: list[Path], size: int, count: int, rng: random.Random) -> torch.Tensor:
    batch = []
    for _ in range(count):
        image = load_rgb_array(rng.choice(paths))
        top, left = rng.randrange(image.shape[0] - size + 1), rng.randrange(image.shape[1] - size + 1)
        batch.append(torch.from_numpy(image[top : top + size, left : left + size].copy()))
    # contiguous: this torch aborts in cheng2020-anchor's backward pass on the permuted (channels-last) layout
    return (torch.stack(batch).permute(0, 3, 1, 2).float() / 255).contiguous()


def train(args) -> None:
    cai = compressai_models()
    paths = [p for p in list_images(args.data) if min(load_rgb_array(p).shape[:2]) >= args.crop][:400]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    for arch in args.archs.split(","):
        for quality, lam in enumerate(args.lambdas):
            torch.manual_seed(quality)
            rng = random.Random(quality)
            net = network(cai, arch, args.n, args.m)
            main = torch.optim.Adam([p for n, p in net.named_parameters() if not n.endswith("quantiles")], lr=1e-4)
            aux = torch.optim.Adam([p for n, p in net.named_parameters() if n.endswith("quantiles")], lr=1e-3)
            started = time.perf_counter()
            for step in range(args.steps):
                x = crops(paths, args.crop, args.batch, rng)
                out = net(x)
                pixels = x.shape[0] * x.shape[2] * x.shape[3]
                bpp = sum(-torch.log2(v).sum() for v in out["likelihoods"].values()) / pixels
                loss = bpp + lam * 255**2 * torch.mean((out["x_hat"] - x) ** 2)
                main.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                main.step()
                aux_loss = net.aux_loss()
                aux.zero_grad()
                aux_loss.backward()
                aux.step()
                if step % 100 == 0:
                    print(f"{arch} q{quality + 1} step {step} loss {float(loss):.3f} bpp {float(bpp):.3f}", flush=True)
            net.update(force=True)
            state = net.state_dict()
            path = args.out / f"{arch}-q{quality + 1}.pth"
            if quality == 1:  # the zoo's older layout: DataParallel prefix, EntropyBottleneck lists
                state = {"module." + old_layout(key): value for key, value in state.items()}
                torch.save(state, path)
            else:
                torch.save({"state_dict": state, "epoch": 1}, path)
            print(f"{path}: {args.steps} steps in {time.perf_counter() - started:.0f} s", flush=True)


def old_layout(key: str) -> str:
    for part in ("matrices", "biases", "factors"):
        key = key.replace(f"entropy_bottleneck.{part}.", f"entropy_bottleneck._{part}.")
    return key


def compare(args) -> None:
    cai = compressai_models()
    from bitstream.container import unpack
    from lic_cli.codec import CodecSession, decode_file, encode_image
    from lic_cli.imageio import ImageData
    from lic_cli.metrics import psnr
    from models.core.geometry import pad_to_multiple

    torch.set_num_threads(args.threads)
    lic = str(Path(sys.executable).with_name("lic"))
    images = list_images(args.kodak)[: args.images]
    result = {"command": "python " + " ".join(sys.argv), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
              "cpu": cpu_name(), "threads": args.threads, "images": len(images), "architectures": []}
    for arch in args.archs.split(","):
        checkpoints = [args.runs / f"{arch}-q{q + 1}.pth" for q in range(len(LAMBDAS))]
        weights = args.runs / f"{arch}-lic.pt"
        subprocess.run([lic, "import", "compressai", "--arch", arch, *map(str, checkpoints), "-o", str(weights),
                        "--force"], check=True)
        session = CodecSession({arch: weights}, compute="fp32")
        loaded = session.get(arch)
        for quality, path in enumerate(checkpoints):
            net = network(cai, arch, args.n, args.m)
            state = torch.load(path, weights_only=True)
            net.load_state_dict(state["state_dict"] if "state_dict" in state else current_layout(state))
            net.update(force=True)
            net.eval()
            row = {"arch": arch, "quality": quality + 1, "lic_bytes": [], "cai_bytes": [], "lic_psnr": [],
                   "cai_psnr": [], "lic_encode": [], "lic_decode": [], "cai_encode": [], "cai_decode": [],
                   "threads_identical": True}
            differences = transform_differences(net, loaded.codec, quality, images[0], pad_to_multiple)
            row["max_difference"] = differences
            for image_path in images:
                pixels = load_rgb_array(image_path)
                image = ImageData(pixels)
                started = time.perf_counter()
                data = encode_image(image, loaded, quality)
                row["lic_encode"].append(time.perf_counter() - started)
                started = time.perf_counter()
                decoded = decode_file(data, session).images[0].pixels
                row["lic_decode"].append(time.perf_counter() - started)
                row["lic_bytes"].append(len(data))
                row["lic_header_bytes"] = len(data) - sum(len(v) for v in unpack(data).sections.values())
                row["lic_psnr"].append(psnr(pixels, decoded))
                torch.set_num_threads(1)
                row["threads_identical"] &= bool(np.array_equal(decode_file(data, session).images[0].pixels, decoded))
                torch.set_num_threads(args.threads)
                x = pad_to_multiple(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255, 64)
                with torch.no_grad():
                    started = time.perf_counter()
                    coded = net.compress(x)
                    row["cai_encode"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    x_hat = net.decompress(coded["strings"], coded["shape"])["x_hat"]
                    row["cai_decode"].append(time.perf_counter() - started)
                row["cai_bytes"].append(sum(len(s[0]) for s in coded["strings"]))
                cai_pixels = (x_hat[0, :, : pixels.shape[0], : pixels.shape[1]].clamp(0, 1) * 255).round()
                row["cai_psnr"].append(psnr(pixels, cai_pixels.byte().permute(1, 2, 0).numpy()))
            summary = {key: float(np.mean(v)) if isinstance(v, list) else v for key, v in row.items()}
            print(json.dumps(summary), flush=True)
            result["architectures"].append(summary)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


def current_layout(state: dict) -> dict:
    """The keys of a checkpoint saved in the zoo's older layout, as CompressAI's classes name them
    (the inverse of old_layout; CompressAI's own load_pretrained mangles keys below latent_codec)."""
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for part in ("matrices", "biases", "factors"):
            key = key.replace(f"entropy_bottleneck._{part}.", f"entropy_bottleneck.{part}.")
        renamed[key] = value
    return renamed


@torch.no_grad()
def transform_differences(net, codec, quality: int, image_path: Path, pad) -> dict[str, float]:
    """Largest |lic - CompressAI| of each stage's output on one image, fp32, same inputs: the
    transforms as lic's modules, and the two that lic runs differently when coding (the fixed-point
    hyper-synthesis that selects tables, the synthesis as lic's decoder runs it)."""
    from models.core.layers import run_decoder
    from models.runtime import fixed as fixed_point

    model, hyper = codec.model, hyper_part(net)
    x = pad(torch.from_numpy(load_rgb_array(image_path)).permute(2, 0, 1)[None].float() / 255, 64)
    y = net.g_a(x)
    mean = model.config.mean
    z = hyper.h_a(y if mean else torch.abs(y))
    z_hat = hyper.entropy_bottleneck.decompress(hyper.entropy_bottleneck.compress(z), z.shape[-2:])
    y_hat = torch.round(y)
    fixed = torch.from_numpy(fixed_point.run(codec.exact.hyper_synthesis[quality], z_hat[0].double().numpy()))[None]
    decoder_input = y_hat.contiguous(memory_format=torch.channels_last)
    differences = {
        "g_a": float((model.g_a[quality](x) - y).abs().max()),
        "h_a": float((model.h_a[quality](y if mean else y.abs()) - z).abs().max()),
        "h_s": float((model.h_s[quality](z_hat) - hyper.h_s(z_hat)).abs().max()),
        "h_s fixed point": float((fixed.float() - hyper.h_s(z_hat)).abs().max()),
        "g_s": float((model.g_s[quality](y_hat) - net.g_s(y_hat)).abs().max()),
        "g_s decoder": float((run_decoder(model.g_s[quality], decoder_input) - net.g_s(y_hat)).abs().max()),
    }
    if hasattr(codec.exact, "traverse"):  # ELIC: the fixed-point passes against CompressAI's context model
        differences.update(elic_pass_differences(net, codec, quality, y, z_hat))
    return differences


def elic_pass_differences(net, codec, quality: int, y: torch.Tensor, z_hat: torch.Tensor) -> dict[str, float]:
    """Largest |lic - CompressAI| of the means, and the share of latents whose scale selects another
    table, over all passes, on the latents lic's encoder codes (CompressAI's modules fed with them)."""
    medians = torch.from_numpy(codec.exact.medians[quality])
    symbols = torch.round(z_hat.double() - medians[None, :, None, None]).to(torch.int64)
    passes = elic_passes_against_compressai(net, codec, quality, y, symbols)
    worst = max(float(np.abs(means - reference).max()) for means, reference, _, _ in passes)
    other_table = sum(int(np.sum(ids != reference_ids)) for _, _, ids, reference_ids in passes)
    count = sum(ids.size for _, _, ids, _ in passes)
    return {"means (passes)": worst, "other table (share)": other_table / count}


def markdown(result: dict) -> str:
    stages = list(dict.fromkeys(stage for row in result["architectures"] for stage in row["max_difference"]))
    lines = [f"Command: `{result['command']}` — {result['cpu']}, {result['threads']} threads, {result['date']}; "
             "means over the first Kodak images (24 for the hyperpriors, 6 for the autoregressive models, whose "
             "CompressAI decoding takes minutes per quality). Bytes: lic's whole file against the lengths of "
             "CompressAI's compress() strings (no header of its own); PSNR of each decoder's 8-bit output; "
             "lic in fp32.", "",
             "| architecture | q | lic bytes | CompressAI bytes | lic / CompressAI | lic PSNR | CompressAI PSNR | "
             "lic encode / decode (s) | CompressAI compress / decompress (s) | decode time ratio | 1 = 2 threads |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["architectures"]:
        lines.append(
            f"| {row['arch']} | {row['quality']} | {row['lic_bytes']:,.0f} | {row['cai_bytes']:,.0f} | "
            f"{row['lic_bytes'] / row['cai_bytes']:.3f} | {row['lic_psnr']:.3f} | {row['cai_psnr']:.3f} | "
            f"{row['lic_encode']:.2f} / {row['lic_decode']:.2f} | {row['cai_encode']:.2f} / {row['cai_decode']:.2f} | "
            f"{row['lic_decode'] / row['cai_decode']:.2f} | {'yes' if row['threads_identical'] else 'NO'} |")
    lines += ["", "Largest |lic − CompressAI| of each stage's output (first image, fp32; the fixed-point "
              "hyper-synthesis is what selects lic's tables, the decoder is lic's faster arrangement of g_s):", "",
              "| architecture | q | " + " | ".join(stages) + " |", "|---|---|" + "---|" * len(stages)]
    for row in result["architectures"]:
        lines.append(f"| {row['arch']} | {row['quality']} | " + " | ".join(
            f"{row['max_difference'][stage]:.2e}" if stage in row["max_difference"] else "–" for stage in stages)
            + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    trainer = sub.add_parser("train")
    trainer.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    trainer.add_argument("--out", type=Path, default=Path("runs/cai"))
    trainer.add_argument("--steps", type=int, default=300)
    trainer.add_argument("--batch", type=int, default=8)
    trainer.add_argument("--crop", type=int, default=128)
    trainer.add_argument("--lambdas", type=lambda v: tuple(float(s) for s in v.split(",")), default=LAMBDAS,
                         help="one network per lambda, saved as ARCH-q1.pth, ARCH-q2.pth, ...")
    for p in (trainer, sub.add_parser("compare")):
        p.add_argument("--n", type=int, default=128)
        p.add_argument("--m", type=int, default=192)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--archs", default=",".join(ARCHITECTURES))
    comparer = sub.choices["compare"]
    comparer.add_argument("--runs", type=Path, default=Path("runs/cai"))
    comparer.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    comparer.add_argument("--images", type=int, default=24)
    comparer.add_argument("--out", type=Path)
    sub.add_parser("markdown").add_argument("result", type=Path)
    args = parser.parse_args()
    if args.command == "markdown":
        print(markdown(json.loads(args.result.read_text())))
        return
    if compressai_models() is None:
        raise SystemExit("CompressAI is not installed (see the module docstring)")
    train(args) if args.command == "train" else compare(args)


if __name__ == "__main__":
    main()
