"""lic's `hyper` against CompressAI's codec path for the same kind of model, timed in one process.

    pip install --no-deps --target /tmp/cai-site compressai==1.2.8 tqdm einops scipy
    PYTHONPATH=/tmp/cai-site python benchmarks/compressai_speed.py [--kodak DIR] [--images 4]
        [--repeat 3] [--threads 2] [--weights FILE]

CompressAI is not a dependency of lic. This script only times it. Its package imports modules for
datasets, plots and point clouds (torchvision, pandas, matplotlib, torch_geometric, ...) that
its codec path never calls, and torchvision has no CPU build here. So those modules are
replaced by empty stand-ins before the import. CompressAI's trained weights cannot be downloaded
here, so its MeanScaleHyperprior is randomly initialised, with lic's widths (N=128, M=256 for the
shipped `hyper`; --latent-channels 192 gives CompressAI's own narrower M). Its transforms cost the
same as trained ones, but its rANS coder sees fewer symbols (the random latents are small), so
its times are a lower bound. Both codecs run the whole image (compress / decompress, `encode`
/ `decode` without file I/O), alternately on each image, with the same thread count. CompressAI
is timed in its default (contiguous) memory layout and in channels_last.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.compressai_support

from lic_cli.imageio import list_images, load_rgb_array
from models import zoo
from models.interface import Geometry
from tests.compressai_support import compressai_models


def compressai_model(channels_last: bool, channels: int, latent_channels: int):
    MeanScaleHyperprior = compressai_models().MeanScaleHyperprior

    torch.manual_seed(0)
    net = MeanScaleHyperprior(channels, latent_channels).eval()
    net.update(force=True)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def time_lic(codec, image: torch.Tensor, quality: int) -> tuple[float, float]:
    height, width = image.shape[1:]
    started = time.perf_counter()
    sections = codec.encode(image, quality)
    encoded = time.perf_counter()
    codec.decode(sections, Geometry(height, width), quality)
    return encoded - started, time.perf_counter() - encoded


@torch.inference_mode()
def time_compressai(net, image: torch.Tensor, channels_last: bool) -> tuple[float, float]:
    x = image[None].contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    started = time.perf_counter()
    out = net.compress(x)
    encoded = time.perf_counter()
    net.decompress(out["strings"], out["shape"])
    return encoded - started, time.perf_counter() - encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", type=int, default=4, help="lic's quality (1-based)")
    parser.add_argument("--weights", type=Path, help="lic hyper weight file (default: the shipped one)")
    parser.add_argument("--latent-channels", type=int, help="CompressAI's M (default: lic's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = zoo.load_codec("hyper", args.weights)
    lic = loaded.codec
    config = lic.model.config
    widths = config.channels, args.latent_channels or config.latent_channels
    references = {"compressai contiguous": (compressai_model(False, *widths), False),
                  "compressai channels_last": (compressai_model(True, *widths), True)}
    times: dict[str, list[tuple[float, float]]] = {"lic": [], **{name: [] for name in references}}
    quality = args.quality - 1
    for path in list_images(args.kodak)[: args.images]:
        image = torch.from_numpy(load_rgb_array(path)).permute(2, 0, 1).float().div_(255)
        for round_number in range(args.repeat + 1):  # round 0 warms up and is not counted
            rounds = {"lic": time_lic(lic, image, quality)}
            rounds.update({name: time_compressai(net, image, last) for name, (net, last) in references.items()})
            if round_number:
                for name, pair in rounds.items():
                    times[name].append(pair)

    print(f"{args.images} Kodak images x {args.repeat} rounds, {args.threads} threads, lic weights "
          f"{loaded.weights_id.hex()} q{args.quality} ({lic.compute}), CompressAI N={widths[0]} M={widths[1]}")
    print("| codec | encode (s/img) | decode (s/img) |\n|---|---|---|")
    for name, pairs in times.items():
        encode_s, decode_s = np.mean(pairs, axis=0)
        print(f"| {name} | {encode_s:.3f} | {decode_s:.3f} |")


if __name__ == "__main__":
    main()
