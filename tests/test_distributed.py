"""Distributed data-parallel training: two gloo processes on the CPU."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner
from PIL import Image

from lic_cli import distributed, train
from lic_cli.cli import main
from lic_cli.train_gan import CoderObjective, CriticObjective, _step
from models import zoo

STEPS = 3
BATCH = 4  # the union batch; each of two ranks takes half
LR = 1e-4
# Parameters whose exact gradient is zero (e.g. a bias before an instance norm) get float noise of
# either sign, which Adam's default eps of 1e-8 turns into full steps of random direction.
ADAM_EPS = 1e-5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def union_batch() -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    return torch.rand(STEPS, BATCH, 3, 64, 64, generator=generator)


def run_steps(family: str, ranks: distributed.Ranks, out: Path) -> None:
    """STEPS steps of the training driver's own step on this rank's share of the union batch; the
    parameters go to out/<family>-<rank>.pt. Deterministic setups (no quantization noise) so that
    one process on the union batch must land on the same parameters."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    device = distributed.start(ranks, torch.device("cpu"))
    share = BATCH // ranks.world_size
    batches = union_batch()[:, ranks.rank * share : (ranks.rank + 1) * share]
    if family == "hyper":
        model, step = rate_distortion_stepper(ranks, device)
        quality = (torch.arange(BATCH) % model.num_qualities)[ranks.rank * share : (ranks.rank + 1) * share]
        for x in batches:
            step(x, quality, LR, straight_through=False)
    else:
        model, step = gan_stepper(ranks, device)
        for x in batches:
            step(x)
    torch.save([p.detach().clone() for p in model.parameters()], out / f"{family}-{ranks.rank}.pt")
    distributed.finish(ranks)


def rate_distortion_stepper(ranks: distributed.Ranks, device: torch.device):
    """hyper with exactly quantized latents (--freeze-encoder) and --reg cse: two models, two optimisers."""
    model = zoo.build_trainable("hyper", zoo.entry("hyper").tiny_config)
    model.exact_quantization = True
    options = train.TrainOptions(model="hyper", data=Path("."), out=Path("."), ranks=ranks,
                                 family=train.family_options("hyper", freeze_encoder=True))
    trainable = train.trainable_parameters(options, model)
    regularizer = train.make_regularizer(train.TrainOptions(model="hyper", data=Path("."), out=Path("."),
                                                            regularizer="cse", ranks=ranks), device)
    objective = distributed.wrap(train.Objective(model, bf16=False), ranks, device)
    optimizer = torch.optim.Adam(trainable, lr=LR, eps=ADAM_EPS)
    step = train.RateDistortionStep(model, objective, optimizer, trainable, regularizer)
    return model, step


def gan_stepper(ranks: distributed.Ranks, device: torch.device):
    """gc-c4 with the GAN on: coder, context model and discriminator, three optimisers."""
    model = zoo.build_trainable("gc-c4", zoo.entry("gc-c4").tiny_config)
    discriminator = model.make_discriminator(8)
    coder = distributed.wrap(CoderObjective(model, discriminator, bf16=False), ranks, device)
    critic = distributed.wrap(CriticObjective(model, discriminator, bf16=False), ranks, device)
    optimisers = (torch.optim.Adam(list(model.encoder.parameters()) + list(model.generator.parameters()), lr=LR,
                                   eps=ADAM_EPS),
                  torch.optim.Adam(model.context.parameters(), lr=LR, eps=ADAM_EPS),
                  torch.optim.Adam(discriminator.parameters(), lr=LR, eps=ADAM_EPS))

    def step(x):
        _step(model, coder, critic, x, True, *optimisers)

    all_parameters = torch.nn.ModuleList([model, discriminator])
    return all_parameters, step


def rank_worker(rank: int, family: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    run_steps(family, distributed.Ranks(rank, 2, rank), Path(out))


def initial_parameters(family: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    stepper = rate_distortion_stepper if family == "hyper" else gan_stepper
    return [p.detach().clone() for p in stepper(distributed.SINGLE, torch.device("cpu"))[0].parameters()]


@pytest.mark.parametrize("family", ["hyper", "gc"])
def test_two_ranks_stay_identical_and_match_one_process_on_the_union_batch(tmp_path, family):
    mp.spawn(rank_worker, args=(family, free_port(), str(tmp_path)), nprocs=2, join=True)
    (tmp_path / "single").mkdir()
    run_steps(family, distributed.SINGLE, tmp_path / "single")
    rank0, rank1 = (torch.load(tmp_path / f"{family}-{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "single" / f"{family}-0.pt")
    assert all(torch.equal(a, b) for a, b in zip(rank0, rank1, strict=True))
    moved = max(float((a - b).abs().max()) for a, b in zip(single, initial_parameters(family), strict=True))
    apart = max(float((a - b).abs().max()) for a, b in zip(rank0, single, strict=True))
    assert moved > 2 * LR
    assert apart < 0.02 * moved


def random_images(folder: Path, count: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def torchrun(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "lic_cli", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_lic_train_under_torchrun_checkpoints_once_and_resumes_in_one_process(tmp_path):
    data = random_images(tmp_path / "data", 12)  # 4 to train on (2 per rank), 8 held out
    out = tmp_path / "run"
    common = ["train", "--model", "hyper", "--data", str(data), "--out", str(out), "--channels", "8",
              "--latent-channels", "8", "--batch-size", "2", "--crop", "64", "--threads", "1", "--reg", "cse"]
    result = torchrun(common + ["--steps", "2"], timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processes finished with identical parameters" in result.stderr
    assert result.stderr.count("exported") == 1 and result.stderr.count("validation @ step 2") == 1
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 2 and "source_model" in state and "2 processes" in state["hardware"]

    resumed = CliRunner().invoke(main, common + ["--steps", "3", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.output and "at step 2" in resumed.output
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 3
    assert zoo.load_codec("hyper", out / "hyper.pt").codec is not None


def test_a_rank_that_fails_stops_the_run_with_its_reason(tmp_path):
    data = random_images(tmp_path / "data", 12)
    (data / "01.png").write_bytes(b"not an image")  # in rank 1's shard: 00, 02 for rank 0; 01, 03 for rank 1
    started = time.monotonic()
    result = torchrun(["train", "--model", "hyper", "--data", str(data), "--out", str(tmp_path / "run"),
                       "--channels", "8", "--latent-channels", "8", "--batch-size", "2", "--crop", "64",
                       "--steps", "2"], timeout=120)
    assert result.returncode != 0
    assert "lic: error (rank 1 of 2): cannot read training image" in result.stderr
    assert "01.png" in result.stderr
    assert time.monotonic() - started < 100


def test_regularizer_and_its_weight_are_refused_where_they_do_not_apply(tmp_path):
    data = random_images(tmp_path / "data", 10)
    runner = CliRunner()
    gan = runner.invoke(main, ["train", "--model", "gc-c4", "--data", str(data), "--reg", "cse"])
    assert gan.exit_code == 2 and "--reg" in gan.output and "gc-c4" in gan.output
    alone = runner.invoke(main, ["train", "--data", str(data), "--alpha", "0.5"])
    assert alone.exit_code == 2 and "needs --reg" in alone.output
