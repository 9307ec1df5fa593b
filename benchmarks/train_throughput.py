"""Training steps per minute of `lic train --model hyper` on this machine, with variants of the
step's arithmetic and layout. Each variant runs in its own process (the same code as lic train:
CropSampler, Objective, RateDistortionStep), after warm-up steps that are not timed.

    python benchmarks/train_throughput.py --data ../shared/data/train --threads 2 \
        --variants baseline,fp32,contiguous,compile,cse --out docs/results-train-throughput.json

Variants: baseline (lic train before torch.compile: bf16 autocast where the CPU has it natively,
channels-last weights and crops, images decoded once into memory); fp32; contiguous (no
channels-last); compile (torch.compile of the objective, what long runs now do); fused-adam
(Adam's fused CPU kernel); cse (--reg cse); ddp (two processes of one thread each under
torchrun, DistributedDataParallel, batch --batch-size each: compare samples per minute); load
(seconds to decode the training images, no steps). Join them with '+', e.g. compile+cse.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cpm_kodak import cpu_name
from lic_cli import distributed, train
from lic_cli.imageio import list_images
from models import zoo
from models.core import precision

VARIANTS = ("baseline", "fp32", "contiguous", "compile", "fused-adam", "cse", "compile+cse", "ddp", "compile+ddp",
            "load")


def measure(variant: str, data: Path, images: int, batch: int, crop: int, steps: int, warmup: int) -> dict:
    paths = list_images(data)[:images]
    if variant == "load":
        started = time.perf_counter()
        sampler = train.CropSampler(paths, crop, torch.device("cpu"), lambda _: None)
        seconds = time.perf_counter() - started
        return {"variant": variant, "images": len(sampler.images), "seconds": round(seconds, 2)}
    flags = set(variant.split("+"))
    ranks = distributed.from_environment() if "ddp" in flags else distributed.SINGLE
    device = distributed.start(ranks, torch.device("cpu"))
    paths = train.shard(paths, ranks)
    bf16 = "fp32" not in flags and precision.cpu_has_native_bf16()
    torch.manual_seed(0)
    model = zoo.build_trainable("hyper")
    if "contiguous" not in flags:
        model = train.channels_last(model)
    objective = distributed.wrap(train.Objective(model, bf16), ranks, device)
    if "compile" in flags:
        objective = torch.compile(objective)
    options = train.TrainOptions(model="hyper", data=data, out=Path("."), regularizer="cse" if "cse" in flags else None)
    regularizer = train.make_regularizer(options, torch.device("cpu"), bf16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused="fused-adam" in flags or None)
    stepper = train.RateDistortionStep(model, objective, optimizer, list(model.parameters()), regularizer)
    sampler = train.CropSampler(paths, crop, torch.device("cpu"), lambda _: None)
    if "contiguous" in flags:
        sampler.batch = contiguous_batches(sampler.batch)
    rng = random.Random(0)
    model.train()
    first = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
            warmup_seconds = started - first
        quality = torch.tensor([rng.randrange(model.num_qualities) for _ in range(batch)])
        stepper(sampler.batch(batch, rng), quality, 1e-5, straight_through=False)
    seconds = time.perf_counter() - started
    distributed.finish(ranks)
    return {"variant": variant, "processes": ranks.world_size, "steps": steps, "seconds": round(seconds, 1),
            "steps_per_minute": round(60 * steps / seconds, 1),
            "samples_per_minute": round(60 * steps * batch * ranks.world_size / seconds, 1), "bf16": bf16,
            "warmup_seconds": round(warmup_seconds, 1), "warmup_steps": warmup}


def contiguous_batches(batch):
    return lambda size, rng: batch(size, rng).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--images", type=int, default=200, help="training images to load (all: a large number)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant in this process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        train.keep_freed_buffers_in_the_heap()
        result = measure(args.one, args.data, args.images, args.batch_size, args.crop, args.steps, args.warmup)
        if distributed.from_environment().is_main:
            print(json.dumps(result))
        return
    results = []
    for variant in args.variants.split(","):
        command = [sys.executable, __file__, "--one", variant, *sys.argv[1:]]
        if "ddp" in variant.split("+"):
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
            threads = str(max(1, args.threads // 2))
            command = [*launcher, __file__, "--one", variant, *sys.argv[1:], "--threads", threads]
        line = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(line))
        print(results[-1], flush=True)
    summary = {"command": "python " + " ".join(sys.argv), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
               "cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "batch_size": args.batch_size,
               "crop": args.crop, "results": results}
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
