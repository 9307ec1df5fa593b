"""Training driver for the generative-compression family (gc-cN): distortion-only warm-up, then
the least-squares GAN with a multi-scale discriminator, the context model trained alongside."""
from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch

from models import gc, precision, zoo

from .train import (
    CropSampler,
    TrainOptions,
    hardware_description,
    learning_rate,
    load_validation,
    pick_device,
    restore_or_initialise,
    save_checkpoint,
    split_images,
)

ADAM_BETAS = (0.5, 0.999)  # pix2pixHD / the paper's GAN setting
CONTEXT_LR = 1e-3


def train_gc(options: TrainOptions, reporter) -> Path:
    log = reporter.log
    if options.threads:
        torch.set_num_threads(options.threads)
    device = pick_device(options.device)
    options.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = options.out / "last.pt"
    paths, val_paths = split_images(options)
    bf16 = precision.resolve(options.precision, device) == "bf16"
    hardware = hardware_description(str(device)) + (", bf16 autocast" if bf16 else ", fp32")
    model = zoo.build_trainable(options.model, options.config_overrides).to(device)
    adversarial = model.config.adversarial
    discriminator_width = _discriminator_width(checkpoint_path, options)
    discriminator = gc.MultiScaleDiscriminator(base=discriminator_width).to(device)
    coder_params = list(model.encoder.parameters()) + list(model.generator.parameters())
    opt_g = torch.optim.Adam(coder_params, lr=options.lr, betas=ADAM_BETAS)
    opt_c = torch.optim.Adam(model.context.parameters(), lr=CONTEXT_LR)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=options.lr, betas=ADAM_BETAS)
    stateful = {"discriminator": discriminator, "opt_g": opt_g, "opt_c": opt_c, "opt_d": opt_d}
    step, elapsed = restore_or_initialise(checkpoint_path, options, model, stateful, device, log)
    log(f"{len(paths)} training images, {len(val_paths)} validation images, device {device}, "
        f"{'GAN after ' + format(options.gan_after, '.0%') + ' of the budget' if adversarial else 'MSE only'}"
        + (f", discriminator width {discriminator_width}" if adversarial else ""))

    sampler = CropSampler(paths, options.crop, device, log)
    val_images = load_validation(val_paths, log)
    rng = random.Random(options.seed * 1_000_003 + step)
    torch.manual_seed(options.seed * 1_000_003 + step)
    budget = options.minutes * 60
    started = time.monotonic() - elapsed
    running: dict[str, float] = {}
    last_line = time.monotonic()
    model.train()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= budget or (options.max_steps is not None and step >= options.max_steps):
            break
        rate = learning_rate(options.lr, elapsed / budget)
        for group in opt_g.param_groups + opt_d.param_groups:
            group["lr"] = rate
        gan_on = adversarial and elapsed / budget >= options.gan_after
        x = sampler.batch(options.batch_size, rng)
        stats = _step(model, discriminator, x, gan_on, bf16, device, opt_g, opt_c, opt_d)
        step += 1
        for key, value in stats.items():
            running[key] = value if key not in running else 0.98 * running[key] + 0.02 * value
        reporter.step(step, elapsed, {"bpp": running["context_bpp"], "psnr": running["psnr"]})
        if time.monotonic() - last_line > 30:
            last_line = time.monotonic()
            log(f"step {step} | {elapsed / 60:.1f}/{options.minutes:.1f} min | "
                + " | ".join(f"{k} {v:.4f}" for k, v in running.items()) + f" | lr {rate:.2e}")
        if step % options.checkpoint_every == 0:
            save_checkpoint(checkpoint_path, model, stateful, step, time.monotonic() - started, options, hardware,
                            discriminator_width=discriminator.base)
        if step % options.eval_every == 0 and val_images:
            _report(model, val_images, device, step, log)
    save_checkpoint(checkpoint_path, model, stateful, step, time.monotonic() - started, options, hardware,
                    discriminator_width=discriminator.base)
    if val_images:
        _report(model, val_images, device, step, log)
    log(f"finished at step {step}; checkpoint {checkpoint_path}")
    return checkpoint_path


def _step(model, discriminator, x, gan_on, bf16, device, opt_g, opt_c, opt_d) -> dict[str, float]:
    pixels = x.shape[2] * x.shape[3]
    discriminator.requires_grad_(False)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
        real = discriminator(x) if gan_on else None
        fake = discriminator(out["x_hat"]) if gan_on else None
        losses = gc.generator_losses(x, out["x_hat"].float(), real, fake)
    context_bits = model.context.bits(out["w_hat"].detach(), out["symbols"]).mean()
    opt_g.zero_grad(set_to_none=True)
    opt_c.zero_grad(set_to_none=True)
    (losses["loss"] + context_bits / pixels).backward()
    torch.nn.utils.clip_grad_norm_(list(model.encoder.parameters()) + list(model.generator.parameters()), 10.0)
    opt_g.step()
    opt_c.step()
    losses = {k: v.detach() for k, v in losses.items()}
    stats = {"loss": float(losses["loss"]), "psnr": float(10 * torch.log10(4 / losses["mse"].clamp(min=1e-10))),
             "context_bpp": float(context_bits.detach()) / pixels}
    if gan_on:
        discriminator.requires_grad_(True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            d_loss = gc.discriminator_loss(discriminator(x), discriminator(out["x_hat"].detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        stats.update(gan=float(losses["gan"]), feature_matching=float(losses["feature_matching"]),
                     d_loss=float(d_loss.detach()))
    return stats


@torch.no_grad()
def _report(model, images, device, step, log) -> None:
    model.eval()
    psnrs, ratios = [], []
    for image in images:
        x = image.to(device)[None]
        out = model(x)
        mse = torch.mean((out["x_hat"].clamp(0, 1) - x) ** 2)
        psnrs.append(float(10 * torch.log10(1 / mse.clamp(min=1e-10))))
        bits = float(model.context.bits(out["w_hat"], out["symbols"])[0])
        ratios.append(bits / gc.bound_bits(x.shape[2], x.shape[3], model.config.bottleneck))
    model.train()
    log(f"validation @ step {step}: PSNR {np.mean(psnrs):.2f} dB, context model at {np.mean(ratios):.1%} of the "
        f"log2(5) bound")


def _discriminator_width(checkpoint_path: Path, options) -> int:
    """A resumed run keeps the discriminator it was started with."""
    if options.resume and checkpoint_path.exists():
        # Memory-mapped: only this number is read here; restore_or_initialise loads the tensors.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
        return int(state.get("discriminator_width", 64))
    return options.discriminator_width
