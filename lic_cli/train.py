"""Training: random crops, wall-clock budget, checkpoints and --resume for every driver, and the
"rate-distortion" driver (one R-D loss over a quality ladder)."""
from __future__ import annotations

import ctypes
import dataclasses
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import zoo
from models.core import precision
from models.core.cse import ConditionalSourceModel

from . import augment, distributed
from .distributed import Ranks
from .imageio import list_images, load_rgb_array


@dataclass
class TrainOptions:
    model: str
    data: Path
    out: Path
    val: Path | None = None
    minutes: float = 60.0
    max_steps: int | None = None
    batch_size: int = 16
    crop: int = 256
    lr: float = 2e-4
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    threads: int | None = None
    eval_every: int = 500
    checkpoint_every: int = 200
    val_holdout: int = 8
    config_overrides: dict | None = None
    init_weights: Path | None = None
    precision: str = "auto"  # auto | bf16 | fp32 (for the transforms; entropy models are always fp32)
    mix: Path | None = None  # a second image folder (e.g. illustrations and screenshots) ...
    mix_share: float = 0.2  # ... that this share of the crops comes from
    augment: tuple[str, ...] = ()  # lic_cli/augment.py: "colours", "compositions"
    # The family's own options: an instance of its Training.options (models.interface); None: their defaults.
    family: Any = None
    regularizer: str | None = None  # "cse": the conditional source entropy regularizer
    alpha: float = 0.1  # its weight, relative to the rate in bits per pixel
    ranks: Ranks = distributed.SINGLE  # this process's place in a torchrun run
    compile: str = "auto"  # torch.compile the training pass: auto | on | off


    def __post_init__(self) -> None:
        if self.family is None:
            self.family = family_options(self.model)


def family_options(model: str, **values) -> Any:
    """The model's family's training options (models.interface.Training.options) with these values."""
    return zoo.entry(model).training.options(**values)


def family_option(options: TrainOptions, name: str, default: Any = None) -> Any:
    """A driver-implemented option (models.interface: QualitySubset, StraightThrough, ...), or
    `default` where the model's family does not offer it."""
    return getattr(options.family, name, default)


def check_family_options(options: TrainOptions) -> None:
    """Combinations of the driver-implemented options that cannot work, as one-line errors."""
    if family_option(options, "context_lr") is not None and family_option(options, "freeze_transforms"):
        raise ValueError("--context-lr trains the context model beside the transforms; with --freeze-transforms "
                         "the context model alone trains at --lr")
    if family_option(options, "grow_warmup") and options.init_weights is None:
        raise ValueError("--grow-warmup needs --init, the weights to grow")

def keep_freed_buffers_in_the_heap() -> bool:
    """Ask glibc to keep freed activation buffers for the next step instead of unmapping them.

    By default every buffer above its mmap threshold goes back to the kernel when freed, and the
    next step's allocation of the same size faults in freshly zeroed pages, which costs system
    time in every step.
    Returns False where the C library is not glibc; training works the same, only slower.
    """
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        settings = ((m_mmap_threshold, 2**31 - 1), (m_trim_threshold, 2**31 - 1), (m_top_pad, 1 << 30))
        return all(libc.mallopt(option, value) == 1 for option, value in settings)
    except (OSError, AttributeError):
        return False


def hardware_description(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


class CropSampler:
    """All training images decoded once into memory; random crops with flips, batched on device.

    Images are drawn in epochs: each in a fresh random order, every image once. mix_paths: a
    second pool (e.g. illustrations and screenshots, which a photo-only model codes badly) that a
    share mix_share of the crops is drawn from, in epochs of its own. In a distributed run each
    rank is given its own shard of both pools."""

    def __init__(self, paths: list[Path], crop: int, device: torch.device, log, mix_paths: list[Path] = (),
                 mix_share: float = 0.0, augmentations: tuple[str, ...] = ()):
        self.crop = crop
        self.augmentations = augmentations
        self.device = device
        self.images = self._load(paths, log)
        self.mixed = self._load(mix_paths, log) if mix_paths else []
        self.mix_share = mix_share if self.mixed else 0.0
        self.orders: dict[int, list[int]] = {id(self.images): [], id(self.mixed): []}
        if not self.images:
            raise ValueError(f"no training image is at least {crop}x{crop} pixels")
        if mix_paths:
            log(f"mixing in {len(self.mixed)} images of {len(mix_paths)} ({mix_share:.0%} of the crops)")
        if augmentations:
            log(f"augmentations: {', '.join(augmentations)} (lic_cli/augment.py)")

    def _load(self, paths: list[Path], log) -> list[torch.Tensor]:
        images = []
        for i, path in enumerate(paths):
            try:
                array = load_rgb_array(path)
            except (OSError, ValueError) as error:
                raise ValueError(f"cannot read training image {path}: {error}") from None
            if min(array.shape[:2]) >= self.crop:
                images.append(torch.from_numpy(array))
            if (i + 1) % 200 == 0:
                log(f"loaded {i + 1}/{len(paths)} training images")
        return images

    def _next_image(self, pool: list[torch.Tensor], rng: random.Random) -> torch.Tensor:
        order = self.orders[id(pool)]
        if not order:
            order.extend(range(len(pool)))
            rng.shuffle(order)
        return pool[order.pop()]

    def batch(self, size: int, rng: random.Random) -> torch.Tensor:
        crops = []
        for _ in range(size):
            if "compositions" in self.augmentations and rng.random() < augment.COMPOSITION_SHARE:
                crops.append(torch.from_numpy(augment.flat_composition(self.crop, rng)))
                continue
            pool = self.mixed if self.mix_share and rng.random() < self.mix_share else self.images
            image = self._next_image(pool, rng)
            top = rng.randrange(image.shape[0] - self.crop + 1)
            left = rng.randrange(image.shape[1] - self.crop + 1)
            patch = image[top : top + self.crop, left : left + self.crop]
            if rng.random() < 0.5:
                patch = patch.flip(1)
            if pool is self.mixed and "colours" in self.augmentations:
                patch = torch.from_numpy(augment.permute_colours(patch.numpy(), rng).copy())
            crops.append(patch)
        batch = torch.stack(crops).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        return batch.contiguous(memory_format=torch.channels_last)


def learning_rate(base: float, progress: float) -> float:
    """Short linear warm-up, then cosine decay to 5% of the base over the wall-clock budget."""
    warmup = 0.02
    if progress < warmup:
        return base * (0.1 + 0.9 * progress / warmup)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


REPORTED_STATS = ("bpp", "psnr", "msssim")  # what a model's rate_distortion may report besides its loss


@torch.no_grad()
def evaluate(model, images: list[torch.Tensor], device: torch.device) -> list[dict[str, float]]:
    """Mean estimated bpp, PSNR (and MS-SSIM where the model reports it) per quality on centre
    crops, with hard rounding."""
    model.eval()
    results = []
    for q in range(model.num_qualities):
        values: dict[str, list[float]] = {}
        for image in images:
            x = image.to(device)[None]
            quality = torch.tensor([q], device=device)
            stats = model.rate_distortion(x, quality, model(x, quality))
            for key in REPORTED_STATS:
                if key in stats:
                    values.setdefault(key, []).append(float(stats[key]))
        results.append({key: float(np.mean(v)) for key, v in values.items()})
    model.train()
    return results


def load_validation(paths: list[Path], log) -> list[torch.Tensor]:
    """Centre crops (multiples of 64) of the validation images; smaller images are skipped."""
    images = []
    for path in paths:
        array = load_rgb_array(path)
        if min(array.shape[:2]) < 64:
            log(f"validation: skipping {path.name} (smaller than 64x64)")
            continue
        images.append(centre_crop_multiple(array, 64))
    return images


def centre_crop_multiple(array: np.ndarray, multiple: int, limit: int = 512) -> torch.Tensor:
    h = min(limit, array.shape[0] // multiple * multiple)
    w = min(limit, array.shape[1] // multiple * multiple)
    top, left = (array.shape[0] - h) // 2, (array.shape[1] - w) // 2
    crop = array[top : top + h, left : left + w]
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255


def data_note(options: TrainOptions) -> str:
    """The training data as a model card states it (kept in the checkpoint for `lic export`)."""
    note = f"{options.data}" + (f" + {options.mix} in {options.mix_share:.0%} of the crops" if options.mix else "")
    return note + (f"; augmentations: {', '.join(options.augment)}" if options.augment else "")


def save_checkpoint(path: Path, model, others: dict, step: int, elapsed: float, options: TrainOptions,
                    hardware: str, **extra) -> None:
    """Write last.pt atomically: the model, `others` (checkpoint key -> object with a state dict, as
    restore_or_initialise reads them back), progress, and what the model card needs."""
    state = {
        "model": model.state_dict(),
        **{key: stateful.state_dict() for key, stateful in others.items()},
        "step": step,
        "elapsed_seconds": elapsed,
        "zoo_name": options.model,
        "config": zoo.config_as_dict(model.config),
        "hardware": hardware,
        "batch_size": options.batch_size,
        "crop": options.crop,
        "data": data_note(options),
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def restore_or_initialise(checkpoint_path: Path, options: TrainOptions, model, others: dict,
                          log) -> tuple[int, float]:
    """(step, elapsed seconds): resume model and `others` (checkpoint key -> object with a state
    dict, as save_checkpoint wrote them) from checkpoint_path, refuse to overwrite it without
    --resume, or start from --init.

    Rank 0 alone reads the files; the others receive what it read (the model's parameters travel
    when DistributedDataParallel wraps it, the rest here). A checkpoint without one of `others`
    (e.g. a run continued with --reg cse) leaves that one as built."""
    ranks = options.ranks

    def read() -> tuple[int, float, dict]:
        if options.resume and checkpoint_path.exists():
            state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            restored = {key: state[key] for key in others if key in state}
            missing = [key for key in others if key not in state]
            step, elapsed = int(state["step"]), float(state["elapsed_seconds"])
            log(f"resumed from {checkpoint_path} at step {step} ({elapsed / 60:.1f} min trained)"
                + (f"; starting {', '.join(missing)} afresh" if missing else ""))
            return step, elapsed, restored
        if checkpoint_path.exists():
            raise FileExistsError(f"{checkpoint_path} exists: pass --resume to continue it, or choose another --out")
        if options.init_weights is not None:
            model.load_state_dict(zoo.load_network_state(options.init_weights, options.model, model))
            log(f"initialised from {options.init_weights}")
        return 0, 0.0, {}

    step, elapsed, restored = distributed.on_main(ranks, read)
    for key, state in restored.items():
        others[key].load_state_dict(state)
    return step, elapsed


def make_sampler(options: TrainOptions, run: RunSetup, log) -> CropSampler:
    mix_paths = list_images(options.mix) if options.mix is not None else []
    if options.mix is not None and not mix_paths:
        raise ValueError(f"no images found in --mix {options.mix}")
    return CropSampler(run.paths, options.crop, run.device, log, shard(mix_paths, options.ranks), options.mix_share,
                       options.augment)


def shard(paths: list[Path], ranks: Ranks) -> list[Path]:
    """This rank's share of a list of images (all of it if there are fewer images than ranks)."""
    if len(paths) < ranks.world_size:
        return paths
    return paths[ranks.rank :: ranks.world_size]


def split_images(options: TrainOptions) -> tuple[list[Path], list[Path]]:
    """(training paths, validation paths): --val, or the last val_holdout images of --data."""
    paths = list_images(options.data)
    if options.val is not None:
        return paths, list_images(options.val)
    return paths[: -options.val_holdout], paths[-options.val_holdout :]


@dataclass
class RunSetup:
    device: torch.device
    bf16: bool
    hardware: str  # for the model card
    checkpoint_path: Path
    paths: list[Path]  # this rank's shard of the training images
    val_paths: list[Path]


def prepare_run(options: TrainOptions) -> RunSetup:
    """Threads, device and its speed flags, the process group of a distributed run, the output
    folder and the image split, for any family."""
    ranks = options.ranks
    if options.threads:
        torch.set_num_threads(options.threads)
    device = distributed.start(ranks, precision.select_device(options.device))
    if device.type == "cpu":
        keep_freed_buffers_in_the_heap()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    paths, val_paths = split_images(options)
    if not paths:
        raise ValueError(f"no training images found in {options.data}")
    if len(paths) < ranks.world_size:
        raise ValueError(f"{len(paths)} training images cannot be shared among {ranks.world_size} processes")
    if ranks.is_main:
        options.out.mkdir(parents=True, exist_ok=True)
    bf16 = precision.resolve(options.precision, device) == "bf16"
    hardware = hardware_description(str(device)) + (", bf16 autocast" if bf16 else ", fp32")
    if ranks.distributed:
        hardware += f", {ranks.world_size} processes (DistributedDataParallel, batch {options.batch_size} each)"
    return RunSetup(device, bf16, hardware, options.out / "last.pt", shard(paths, ranks), val_paths)


@dataclass
class LoopHooks:
    """What a model family plugs into the shared wall-clock training loop."""

    step: Callable[[torch.Tensor, random.Random, float, float, int], dict[str, float]]
    """(batch, rng, learning rate, budget progress 0..1, steps done before it, earlier sessions
    included) -> scalar stats of one optimisation step."""
    save: Callable[[int, float], None]  # (step, elapsed seconds): write the checkpoint (rank 0 only)
    validate: Callable[[int], None]  # (step): log validation numbers (rank 0 only)
    describe: Callable[[dict[str, float]], str]  # running stats -> the middle of a log line
    bpp_key: str = "bpp"  # which running stat the progress bar shows as bpp


def budget_progress(options: TrainOptions, step: int, elapsed: float) -> float:
    """How far the run is, 0..1, for the learning-rate schedule: by steps when --steps is given (so
    that runs meant to be compared follow the same schedule whatever the machine's speed), else by
    the wall-clock budget."""
    if options.max_steps:
        return min(1.0, step / options.max_steps)
    return min(1.0, elapsed / (options.minutes * 60))


def run_budgeted_loop(options: TrainOptions, sampler: CropSampler, step: int, elapsed: float, hooks: LoopHooks,
                      reporter, device: torch.device) -> int:
    """Step until the wall-clock budget (or --steps) is spent, counting the time of earlier
    sessions; log, checkpoint and validate on schedule, then save and validate once more.
    Returns the final step. In a distributed run rank 0's clock decides for every rank."""
    ranks = options.ranks
    # Seeded from the step (and rank) so that a resumed run does not replay the crops it has seen.
    rng = random.Random((options.seed * 1_000_003 + step) * 1009 + ranks.rank)
    torch.manual_seed((options.seed * 1_000_003 + step) * 1009 + ranks.rank)
    budget = options.minutes * 60
    started = time.monotonic() - elapsed
    running: dict[str, float] = {}
    last_line = time.monotonic()
    while True:
        elapsed = distributed.agree(ranks, time.monotonic() - started, device)
        if elapsed >= budget or (options.max_steps is not None and step >= options.max_steps):
            break
        progress = budget_progress(options, step, elapsed)
        rate = learning_rate(options.lr, progress)
        stats = hooks.step(sampler.batch(options.batch_size, rng), rng, rate, progress, step)
        step += 1
        for key, value in stats.items():
            running[key] = value if key not in running else 0.98 * running[key] + 0.02 * value
        reporter.step(step, elapsed, {"bpp": running[hooks.bpp_key], "psnr": running["psnr"]})
        if time.monotonic() - last_line > 30:
            last_line = time.monotonic()
            reporter.log(f"step {step} | {elapsed / 60:.1f}/{options.minutes:.1f} min | {hooks.describe(running)} "
                         f"| lr {rate:.2e}")
        if ranks.is_main and step % options.checkpoint_every == 0:
            hooks.save(step, time.monotonic() - started)
        if ranks.is_main and step % options.eval_every == 0:
            hooks.validate(step)
    if ranks.is_main:
        hooks.save(step, time.monotonic() - started)
        hooks.validate(step)
    return step


class Objective(nn.Module):
    """A model's training pass and its loss as one module: what DistributedDataParallel wraps, so
    that its gradient hooks cover every parameter the loss reads (entropy models included).
    Returns (stats with "loss", the reconstruction)."""

    def __init__(self, model: nn.Module, bf16: bool):
        super().__init__()
        self.model = model
        self.bf16 = bf16

    def forward(self, x: torch.Tensor, quality: torch.Tensor,
                rate_weights: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(x, quality)
        return self.model.rate_distortion(x, quality, out, rate_weights), out["x_hat"]


SOURCE_MODEL_LR = 1e-3  # the paper's learning rate for q(x | x̂)
REGULARIZERS = ("cse",)


class SourceEntropyRegularizer:
    """--reg cse: subtract alpha·H(X | X̂) from the codec's loss, H estimated by an auxiliary
    model q(x | x̂) trained alongside by maximum likelihood (models/core/cse.py); the two alternate
    every step. q is initialised from its own seed, so a regularised run draws the same crops
    and noise as its unregularised twin."""

    def __init__(self, kind: str, alpha: float, options: TrainOptions, device: torch.device, bf16: bool = False):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            self.model = channels_last(ConditionalSourceModel(kind).to(device))
        self.alpha = alpha
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=SOURCE_MODEL_LR)
        self.bits = SourceBits(self.model, bf16)
        self.fit_objective = distributed.wrap(self.bits, options.ranks, device)

    def penalty(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(alpha·E[log2 q(x | x̂)] per pixel, q frozen: its gradient reaches x̂ only; the estimate
        of H(X | X̂) in bits per pixel)."""
        self.model.requires_grad_(False)
        try:
            bits = self.bits(x, x_hat)
        finally:
            self.model.requires_grad_(True)
        return -self.alpha * bits.mean(), float(bits.detach().mean())

    def fit(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """One maximum-likelihood step of q on the codec's (detached) reconstructions."""
        bits = self.fit_objective(x, x_hat.detach()).mean()
        self.optimizer.zero_grad(set_to_none=True)
        bits.backward()
        self.optimizer.step()

    def checkpoint_entries(self) -> dict:
        return {"source_model": self.model, "source_optimizer": self.optimizer}


class SourceBits(nn.Module):
    """(B,) −log2 q(x | x̂) per pixel, the network in bf16 where the run uses it; a module so that
    DistributedDataParallel can wrap q's maximum-likelihood step."""

    def __init__(self, model: ConditionalSourceModel, bf16: bool):
        super().__init__()
        self.model = model
        self.bf16 = bf16

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.bits_per_pixel(x, x_hat)


@dataclass
class RateDistortionStep:
    """One optimisation step of the rate-distortion driver: the codec on its loss (plus the
    regularizer's penalty), then the regularizer's own model. objective: Objective(model), or a
    DistributedDataParallel of it, which averages the gradients of all ranks in backward()."""

    model: nn.Module
    objective: Callable
    optimizer: torch.optim.Optimizer
    trainable: list[nn.Parameter]
    regularizer: SourceEntropyRegularizer | None = None

    def __call__(self, x: torch.Tensor, quality: torch.Tensor, rate: float, straight_through: bool,
                 rate_weights: torch.Tensor | None = None) -> dict[str, float]:
        self.set_learning_rate(rate)
        self.model.straight_through = straight_through
        stats, x_hat = self.objective(x, quality, rate_weights)
        loss = stats["loss"]
        reported = {key: float(stats[key].detach()) for key in ("loss", *REPORTED_STATS) if key in stats}
        if self.regularizer:
            penalty, reported["cse"] = self.regularizer.penalty(x, x_hat)
            loss = loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        if self.regularizer:
            self.regularizer.fit(x, x_hat)
        return reported


    def set_learning_rate(self, rate: float) -> None:
        """The schedule's rate for this step; a parameter group with an "lr_scale" (--context-lr) gets
        that multiple of it."""
        for group in self.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_scale", 1.0)


def make_regularizer(options: TrainOptions, device: torch.device,
                     bf16: bool = False) -> SourceEntropyRegularizer | None:
    if options.regularizer is None:
        return None
    if options.regularizer not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {options.regularizer!r} (known: {', '.join(REGULARIZERS)})")
    kind = zoo.entry(options.model).training.source_model
    if kind is None:
        raise ValueError(f"--reg {options.regularizer} applies to models trained with a rate-distortion loss, "
                         f"not to {options.model}")
    return SourceEntropyRegularizer(kind, options.alpha, options, device, bf16)


def train(options: TrainOptions, reporter) -> Path:
    log = reporter.log
    ranks = options.ranks
    run = prepare_run(options)
    device, bf16, checkpoint_path = run.device, run.bf16, run.checkpoint_path
    log(f"{len(run.paths)} training images, {len(run.val_paths)} validation images, device {device}"
        + (f", {ranks.world_size} processes, batch {options.batch_size} each" if ranks.distributed else ""))

    def configuration() -> tuple[dict | None, dict]:
        init = None if options.init_weights is None else zoo.weight_file_config(options.init_weights, options.model)
        return init, network_sizes(options, checkpoint_path, init)

    init_config, sizes = distributed.on_main(ranks, configuration)
    model = zoo.build_trainable(options.model, sizes)
    model = channels_last(model.to(device))
    model.training_options = options.family
    if family_option(options, "freeze_encoder"):
        model.exact_quantization = True
    trainable = trainable_parameters(options, model)
    optimizer = torch.optim.Adam(parameter_groups(options, model, trainable), lr=options.lr)
    regularizer = make_regularizer(options, device, bf16)
    stateful = {"optimizer": optimizer, **(regularizer.checkpoint_entries() if regularizer else {})}
    step, elapsed = restore_or_initialise(checkpoint_path, options, model, stateful, log)
    if regularizer:
        log(f"regularizer: conditional source entropy, alpha {options.alpha}, q(x | x^) "
            f"{zoo.entry(options.model).training.source_model}")

    first_new_channel = grown_channels_start(options, model, init_config)
    trained_qualities = qualities_to_train(options, model.num_qualities)
    sampler = make_sampler(options, run, log)
    val_images = load_validation(run.val_paths, log) if ranks.is_main else []
    objective = compiled(distributed.wrap(Objective(model, bf16), ranks, device), options, log)

    stepper = RateDistortionStep(model, objective, optimizer, trainable, regularizer)

    def one_step(x: torch.Tensor, rng: random.Random, rate: float, progress: float, done: int) -> dict[str, float]:
        quality = torch.tensor([rng.choice(trained_qualities) for _ in range(options.batch_size)], device=device)
        rate_weights = None
        if first_new_channel is not None:
            rate_weights = grown_channel_rate_weights(model.config.latent_channels, first_new_channel,
                                                      family_option(options, "grow_warmup", 0), done)
        straight_through = progress >= family_option(options, "straight_through_after", 0.6)
        return stepper(x, quality, rate, straight_through, rate_weights)

    def validate(at_step: int) -> None:
        if val_images:
            report_validation(evaluate(model, val_images, device), at_step, log)

    hooks = LoopHooks(
        step=one_step,
        save=lambda at_step, seconds: save_checkpoint(checkpoint_path, model, stateful, at_step,
                                                      seconds, options, run.hardware),
        validate=validate,
        describe=describe_running,
    )
    model.train()
    step = run_budgeted_loop(options, sampler, step, elapsed, hooks, reporter, device)
    check_replicas(options.ranks, model, device, log)
    log(f"finished at step {step}; checkpoint {checkpoint_path}")
    return checkpoint_path


COMPILE_AFTER_STEPS = 1000  # auto: runs this long (or --minutes COMPILE_AFTER_MINUTES without --steps) compile
COMPILE_AFTER_MINUTES = 10


def wants_compile(options: TrainOptions) -> bool:
    """Whether to torch.compile the training pass: its one-off compilation (tens of seconds, cached
    afterwards) pays back in long runs only (docs/results.md, "Training throughput")."""
    if options.compile != "auto":
        return options.compile == "on"
    if options.max_steps is not None:
        return options.max_steps >= COMPILE_AFTER_STEPS
    return options.minutes >= COMPILE_AFTER_MINUTES


def compiled(objective: nn.Module, options: TrainOptions, log) -> Callable:
    """The objective through torch.compile (when wanted), falling back to running it as it is if
    compilation fails (e.g. no C++ compiler): a real error then shows in the eager run."""
    if not wants_compile(options):
        return objective
    try:
        fast = torch.compile(objective)
    except Exception as error:  # e.g. a Python that this torch's compiler does not support
        log(f"torch.compile is not available ({first_line(error)}); training without it")
        return objective
    state = {"run": fast}

    def run(*args):
        if state["run"] is fast:
            try:
                return fast(*args)
            except Exception as error:  # any compiler failure: the eager pass decides
                log(f"torch.compile failed ({first_line(error)}); training without it")
                state["run"] = objective
        return state["run"](*args)

    return run


def first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:120]}"


def check_replicas(ranks: Ranks, model: nn.Module, device: torch.device, log) -> None:
    """Stop with an error if the ranks' parameters differ: the exported file would depend on which
    rank wrote it."""
    if not ranks.distributed:
        return
    if not distributed.parameters_agree(ranks, model, device):
        raise RuntimeError("the processes' parameters differ after training: the run is not usable")
    log(f"{ranks.world_size} processes finished with identical parameters")


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """The 2D convolutions' weights in channels-last layout (faster on CPUs and GPUs); other
    parameters (e.g. a 3D context model's) keep theirs."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
    return model


def trainable_parameters(options: TrainOptions, model) -> list[torch.nn.Parameter]:
    """All parameters; with --freeze-encoder only the decoder side's, the others excluded from the
    backward pass (exactly quantized latents pass no gradient to them anyway); with
    --freeze-transforms only the context model's, the transforms run without gradients."""
    if family_option(options, "freeze_transforms"):
        trainable = model.context_parameters()
        model.transforms_frozen = True
    elif family_option(options, "freeze_encoder"):
        trainable = model.decoder_parameters()
    else:
        return list(model.parameters())
    model.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    return trainable


def parameter_groups(options: TrainOptions, model, trainable: list[torch.nn.Parameter]) -> list[dict]:
    """Adam's parameter groups: one, or with --context-lr the context model's own, whose learning
    rate follows the schedule at context_lr / lr times the others' (a context model trained in a
    first stage and transforms only fine-tuned want different rates)."""
    if family_option(options, "context_lr") is None or family_option(options, "freeze_transforms"):
        return [{"params": trainable}]
    context = {id(parameter) for parameter in model.context_parameters()}
    return [{"params": [p for p in trainable if id(p) not in context]},
            {"params": [p for p in trainable if id(p) in context],
             "lr_scale": family_option(options, "context_lr") / options.lr}]


def qualities_to_train(options: TrainOptions, available: int) -> list[int]:
    if family_option(options, "qualities") is None:
        return list(range(available))
    outside = [q + 1 for q in family_option(options, "qualities") if not 0 <= q < available]
    if outside:
        raise ValueError(f"quality {outside[0]} is not one of the model's 1..{available}")
    return sorted(family_option(options, "qualities"))  # a quality listed twice is drawn twice as often


def peek_checkpoint(checkpoint_path: Path) -> dict:
    """A checkpoint memory-mapped, for reading a few small entries before restore_or_initialise
    loads the tensors. (str: torch 2.2 memory-maps only a str filename, not a Path.)"""
    return torch.load(str(checkpoint_path), map_location="cpu", weights_only=True, mmap=True)


def network_sizes(options: TrainOptions, checkpoint_path: Path, init_config: dict | None) -> dict:
    """Configuration overrides of the network to train: the sizes of the checkpoint being resumed
    or of the --init weights (their configuration: init_config), so that continuing a shipped file
    needs no size options, then the command line's (a wider --latent-channels than --init's grows
    its latent)."""
    training = zoo.entry(options.model).training
    flags = {key: "--" + option.replace("_", "-") for option, key in training.sizes.items()}
    flags.update({field.metadata["config"]: "--" + field.name.replace("_", "-")
                  for field in dataclasses.fields(training.options) if field.metadata.get("config")})
    overrides = dict(options.config_overrides or {})
    if options.resume and checkpoint_path.exists():
        saved = peek_checkpoint(checkpoint_path)["config"]
        for key, value in overrides.items():
            if key in flags and saved.get(key) != value:
                raise ValueError(f"{checkpoint_path} was trained with {key} {saved.get(key)}: drop {flags[key]} "
                                 "to resume it, or start a new run with another --out")
        inherited = saved
    elif init_config is not None:
        inherited = training.inherited_sizes(dict(init_config))
    else:
        return overrides
    sizes = {key: inherited[key] for key in flags if inherited.get(key) is not None}
    return {**sizes, **overrides}


def grown_channels_start(options: TrainOptions, model, init_config: dict | None) -> int | None:
    """With --grow-warmup: the first latent channel that the model has and the --init weights (their
    configuration: init_config) lack."""
    if not family_option(options, "grow_warmup", 0):
        return None
    if init_config is None:
        raise ValueError("--grow-warmup needs --init: the weights whose latent the run widens")
    old_m, new_m = init_config["latent_channels"], model.config.latent_channels
    if new_m <= old_m:
        raise ValueError(f"--grow-warmup: {options.init_weights} already has {old_m} latent channels; "
                         "pass a wider --latent-channels to grow it")
    return old_m


def grown_channel_rate_weights(channels: int, first_new: int, warmup: int, step: int) -> torch.Tensor | None:
    """Weights on each latent channel's bits in the loss: the grown channels pay no rate for `warmup`
    steps, then a share that ramps up linearly over as many steps; None once they pay in full.

    Without this, the rate term silences new channels before the synthesis learns to use them."""
    share = min(1.0, max(0.0, (step - warmup) / warmup))
    if share >= 1.0:
        return None
    weights = torch.ones(channels)
    weights[first_new:] = share
    return weights


def describe_running(running: dict[str, float]) -> str:
    line = f"loss {running['loss']:.3f} | bpp {running['bpp']:.3f} | psnr {running['psnr']:.2f} dB"
    line += f" | ms-ssim {running['msssim']:.4f}" if "msssim" in running else ""
    return line + (f" | H(X|X^) {running['cse']:.3f} bpp" if "cse" in running else "")


def report_validation(results: list[dict[str, float]], step: int, log) -> None:
    points = "  ".join(f"q{q + 1}: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB"
                       + (f" {r['msssim']:.4f}" if "msssim" in r else "") for q, r in enumerate(results))
    log(f"validation @ step {step}: {points}")
