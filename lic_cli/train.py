"""Training: random crops, wall-clock budget, checkpoints and --resume for every driver, and the
"rate-distortion" driver (one R-D loss over a quality ladder)."""
from __future__ import annotations

import ctypes
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import precision, zoo

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
    straight_through_after: float = 0.6  # fraction of the budget after which the decoder sees rounded latents
    gan_after: float = 0.3  # "gan" driver: fraction of the budget trained on distortion only before the GAN starts
    discriminator_width: int = 64  # "gan" driver: channels of the discriminator's first layer (pix2pixHD: 64)
    grow_warmup: int = 0  # a latent grown from narrower --init weights: steps before the new channels pay rate
    qualities: tuple[int, ...] | None = None  # 0-based quality indices to draw from (None: all, evenly)
    freeze_encoder: bool = False  # train the decoder side alone on exactly quantized latents
    mix: Path | None = None  # a second image folder (e.g. illustrations and screenshots) ...
    mix_share: float = 0.2  # ... that this share of the crops comes from


def keep_freed_buffers_in_the_heap() -> bool:
    """Ask glibc to keep freed activation buffers for the next step instead of unmapping them.

    By default every buffer above its mmap threshold goes back to the kernel when freed, and the
    next step's allocation of the same size faults in freshly zeroed pages. On a 2-core AVX2 CPU,
    40 fp32 steps took 117 s wall (38 s of it system time) without this and 91 s (6 s) with it.
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

    mix_paths: a second pool (e.g. illustrations and screenshots, which a photo-only model codes
    badly) that a share mix_share of the crops is drawn from."""

    def __init__(self, paths: list[Path], crop: int, device: torch.device, log, mix_paths: list[Path] = (),
                 mix_share: float = 0.0):
        self.crop = crop
        self.device = device
        self.images = self._load(paths, log)
        self.mixed = self._load(mix_paths, log) if mix_paths else []
        self.mix_share = mix_share if self.mixed else 0.0
        if not self.images:
            raise ValueError(f"no training image is at least {crop}x{crop} pixels")
        if mix_paths:
            log(f"mixing in {len(self.mixed)} images of {len(mix_paths)} ({mix_share:.0%} of the crops)")

    def _load(self, paths: list[Path], log) -> list[torch.Tensor]:
        images = []
        for i, path in enumerate(paths):
            array = load_rgb_array(path)
            if min(array.shape[:2]) >= self.crop:
                images.append(torch.from_numpy(array))
            if (i + 1) % 200 == 0:
                log(f"loaded {i + 1}/{len(paths)} training images")
        return images

    def batch(self, size: int, rng: random.Random) -> torch.Tensor:
        crops = []
        for _ in range(size):
            pool = self.mixed if self.mix_share and rng.random() < self.mix_share else self.images
            image = pool[rng.randrange(len(pool))]
            top = rng.randrange(image.shape[0] - self.crop + 1)
            left = rng.randrange(image.shape[1] - self.crop + 1)
            patch = image[top : top + self.crop, left : left + self.crop]
            if rng.random() < 0.5:
                patch = patch.flip(1)
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
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def restore_or_initialise(checkpoint_path: Path, options: TrainOptions, model, others: dict, device,
                          log) -> tuple[int, float]:
    """(step, elapsed seconds): resume model and `others` (checkpoint key -> object with a state
    dict) from checkpoint_path, refuse to overwrite it without --resume, or start from --init."""
    if options.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        for key, stateful in others.items():
            stateful.load_state_dict(state[key])
        step, elapsed = int(state["step"]), float(state["elapsed_seconds"])
        log(f"resumed from {checkpoint_path} at step {step} ({elapsed / 60:.1f} min trained)")
        return step, elapsed
    if checkpoint_path.exists():
        raise FileExistsError(f"{checkpoint_path} exists: pass --resume to continue it, or choose another --out")
    if options.init_weights is not None:
        model.load_state_dict(zoo.load_network_state(options.init_weights, options.model, model))
        log(f"initialised from {options.init_weights}")
    return 0, 0.0


def make_sampler(options: TrainOptions, run: RunSetup, log) -> CropSampler:
    mix_paths = list_images(options.mix) if options.mix is not None else []
    if options.mix is not None and not mix_paths:
        raise ValueError(f"no images found in --mix {options.mix}")
    return CropSampler(run.paths, options.crop, run.device, log, mix_paths, options.mix_share)


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
    paths: list[Path]
    val_paths: list[Path]


def prepare_run(options: TrainOptions) -> RunSetup:
    """Threads, device and its speed flags, the output folder and the image split, for any family."""
    if options.threads:
        torch.set_num_threads(options.threads)
    device = precision.select_device(options.device)
    if device.type == "cpu":
        keep_freed_buffers_in_the_heap()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    paths, val_paths = split_images(options)
    if not paths:
        raise ValueError(f"no training images found in {options.data}")
    options.out.mkdir(parents=True, exist_ok=True)
    bf16 = precision.resolve(options.precision, device) == "bf16"
    hardware = hardware_description(str(device)) + (", bf16 autocast" if bf16 else ", fp32")
    return RunSetup(device, bf16, hardware, options.out / "last.pt", paths, val_paths)


@dataclass
class LoopHooks:
    """What a model family plugs into the shared wall-clock training loop."""

    step: Callable[[torch.Tensor, random.Random, float, float, int], dict[str, float]]
    """(batch, rng, learning rate, budget progress 0..1, steps done before it, earlier sessions
    included) -> scalar stats of one optimisation step."""
    save: Callable[[int, float], None]  # (step, elapsed seconds): write the checkpoint
    validate: Callable[[int], None]  # (step): log validation numbers
    describe: Callable[[dict[str, float]], str]  # running stats -> the middle of a log line
    bpp_key: str = "bpp"  # which running stat the progress bar shows as bpp


def run_budgeted_loop(options: TrainOptions, sampler: CropSampler, step: int, elapsed: float, hooks: LoopHooks,
                      reporter) -> int:
    """Step until the wall-clock budget (or --steps) is spent, counting the time of earlier
    sessions; log, checkpoint and validate on schedule, then save and validate once more.
    Returns the final step."""
    # Seeded from the step so that a resumed run does not replay the crops it has already seen.
    rng = random.Random(options.seed * 1_000_003 + step)
    torch.manual_seed(options.seed * 1_000_003 + step)
    budget = options.minutes * 60
    started = time.monotonic() - elapsed
    running: dict[str, float] = {}
    last_line = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= budget or (options.max_steps is not None and step >= options.max_steps):
            break
        rate = learning_rate(options.lr, elapsed / budget)
        stats = hooks.step(sampler.batch(options.batch_size, rng), rng, rate, elapsed / budget, step)
        step += 1
        for key, value in stats.items():
            running[key] = value if key not in running else 0.98 * running[key] + 0.02 * value
        reporter.step(step, elapsed, {"bpp": running[hooks.bpp_key], "psnr": running["psnr"]})
        if time.monotonic() - last_line > 30:
            last_line = time.monotonic()
            reporter.log(f"step {step} | {elapsed / 60:.1f}/{options.minutes:.1f} min | {hooks.describe(running)} "
                         f"| lr {rate:.2e}")
        if step % options.checkpoint_every == 0:
            hooks.save(step, time.monotonic() - started)
        if step % options.eval_every == 0:
            hooks.validate(step)
    hooks.save(step, time.monotonic() - started)
    hooks.validate(step)
    return step


def train(options: TrainOptions, reporter) -> Path:
    log = reporter.log
    run = prepare_run(options)
    device, bf16, checkpoint_path = run.device, run.bf16, run.checkpoint_path
    log(f"{len(run.paths)} training images, {len(run.val_paths)} validation images, device {device}")

    init_config = None if options.init_weights is None else zoo.weight_file_config(options.init_weights, options.model)
    model = zoo.build_trainable(options.model, network_sizes(options, checkpoint_path, init_config))
    model = channels_last(model.to(device))
    if options.freeze_encoder:
        model.exact_quantization = True
    trainable = trainable_parameters(options, model)
    optimizer = torch.optim.Adam(trainable, lr=options.lr)
    step, elapsed = restore_or_initialise(checkpoint_path, options, model, {"optimizer": optimizer}, device, log)

    first_new_channel = grown_channels_start(options, model, init_config)
    trained_qualities = qualities_to_train(options, model.num_qualities)
    sampler = make_sampler(options, run, log)
    val_images = load_validation(run.val_paths, log)

    def one_step(x: torch.Tensor, rng: random.Random, rate: float, progress: float, done: int) -> dict[str, float]:
        for group in optimizer.param_groups:
            group["lr"] = rate
        model.straight_through = progress >= options.straight_through_after
        quality = torch.tensor([rng.choice(trained_qualities) for _ in range(options.batch_size)], device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x, quality)
        rate_weights = None
        if first_new_channel is not None:
            rate_weights = grown_channel_rate_weights(model.config.latent_channels, first_new_channel,
                                                      options.grow_warmup, done)
        stats = model.rate_distortion(x, quality, out, rate_weights)
        optimizer.zero_grad(set_to_none=True)
        stats["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return {key: float(stats[key].detach()) for key in ("loss", *REPORTED_STATS) if key in stats}

    def validate(at_step: int) -> None:
        if val_images:
            report_validation(evaluate(model, val_images, device), at_step, log)

    hooks = LoopHooks(
        step=one_step,
        save=lambda at_step, seconds: save_checkpoint(checkpoint_path, model, {"optimizer": optimizer}, at_step,
                                                      seconds, options, run.hardware),
        validate=validate,
        describe=describe_running,
    )
    model.train()
    step = run_budgeted_loop(options, sampler, step, elapsed, hooks, reporter)
    log(f"finished at step {step}; checkpoint {checkpoint_path}")
    return checkpoint_path


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """The 2D convolutions' weights in channels-last layout (faster on CPUs and GPUs); other
    parameters (e.g. a 3D context model's) keep theirs."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
    return model


def trainable_parameters(options: TrainOptions, model) -> list[torch.nn.Parameter]:
    """All parameters; with --freeze-encoder only the decoder side's, the others excluded from the
    backward pass (exactly quantized latents pass no gradient to them anyway)."""
    if not options.freeze_encoder:
        return list(model.parameters())
    trainable = model.decoder_parameters()
    model.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    return trainable


def qualities_to_train(options: TrainOptions, available: int) -> list[int]:
    if options.qualities is None:
        return list(range(available))
    outside = [q + 1 for q in options.qualities if not 0 <= q < available]
    if outside:
        raise ValueError(f"quality {outside[0]} is not one of the model's 1..{available}")
    return sorted(options.qualities)  # a quality listed twice is drawn twice as often


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
    if not options.grow_warmup:
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
    return line + (f" | ms-ssim {running['msssim']:.4f}" if "msssim" in running else "")


def report_validation(results: list[dict[str, float]], step: int, log) -> None:
    points = "  ".join(f"q{q + 1}: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB"
                       + (f" {r['msssim']:.4f}" if "msssim" in r else "") for q, r in enumerate(results))
    log(f"validation @ step {step}: {points}")
