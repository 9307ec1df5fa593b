"""The "gan" training driver: distortion-only warm-up, then a least-squares GAN with the model's
multi-scale discriminator, the model's context (entropy) model trained alongside."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models import zoo
from models.core.geometry import to_uint8

from . import distributed, metrics
from .train import (
    LoopHooks,
    TrainOptions,
    check_replicas,
    family_option,
    load_validation,
    make_sampler,
    peek_checkpoint,
    prepare_run,
    restore_or_initialise,
    run_budgeted_loop,
    save_checkpoint,
)

OPTIONAL_TERMS = ("ms_ssim", "synthesised_colour")  # reported when the loss has them
ADAM_BETAS = (0.5, 0.999)  # pix2pixHD / the paper's GAN setting
CONTEXT_LR = 1e-3


def train_gan(options: TrainOptions, reporter) -> Path:
    log = reporter.log
    ranks = options.ranks
    run = prepare_run(options)
    device, bf16, checkpoint_path = run.device, run.bf16, run.checkpoint_path
    model = zoo.build_trainable(options.model, options.config_overrides).to(device)
    model.training_options = options.family
    gan_after = family_option(options, "gan_after", 0.0)
    adversarial = model.config.adversarial
    discriminator_width = distributed.on_main(ranks, lambda: _discriminator_width(checkpoint_path, options))
    discriminator = model.make_discriminator(discriminator_width).to(device)
    coder_params = list(model.encoder.parameters()) + list(model.generator.parameters())
    opt_g = torch.optim.Adam(coder_params, lr=options.lr, betas=ADAM_BETAS)
    opt_c = torch.optim.Adam(model.context.parameters(), lr=CONTEXT_LR)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=options.lr, betas=ADAM_BETAS)
    stateful = {"discriminator": discriminator, "opt_g": opt_g, "opt_c": opt_c, "opt_d": opt_d}
    step, elapsed = restore_or_initialise(checkpoint_path, options, model, stateful, log)
    log(f"{len(run.paths)} training images, {len(run.val_paths)} validation images, device {device}, "
        f"{'GAN after ' + format(gan_after, '.0%') + ' of the budget' if adversarial else 'MSE only'}"
        + (f", discriminator width {discriminator_width}" if adversarial else ""))

    sampler = make_sampler(options, run, log)
    val_images = load_validation(run.val_paths, log) if ranks.is_main else []
    coder_step = distributed.wrap(CoderObjective(model, discriminator, bf16), ranks, device)
    critic_step = distributed.wrap(CriticObjective(model, discriminator, bf16), ranks, device)

    def one_step(x: torch.Tensor, rng: random.Random, rate: float, progress: float, done: int) -> dict[str, float]:
        for group in opt_g.param_groups + opt_d.param_groups:
            group["lr"] = rate
        gan_on = adversarial and progress >= gan_after
        return _step(model, coder_step, critic_step, x, gan_on, opt_g, opt_c, opt_d)

    def validate(at_step: int) -> None:
        if val_images:
            _report(model, val_images, device, at_step, log)

    hooks = LoopHooks(
        step=one_step,
        save=lambda at_step, seconds: save_checkpoint(checkpoint_path, model, stateful, at_step, seconds, options,
                                                      run.hardware, discriminator_width=discriminator.base),
        validate=validate,
        describe=lambda running: " | ".join(f"{k} {v:.4f}" for k, v in running.items()),
        bpp_key="context_bpp",
    )
    model.train()
    step = run_budgeted_loop(options, sampler, step, elapsed, hooks, reporter, device)
    check_replicas(ranks, model, device, log)
    log(f"finished at step {step}; checkpoint {checkpoint_path}")
    return checkpoint_path


class CoderObjective(nn.Module):
    """The coder's step: generator losses (the discriminator judging, held fixed) plus the context
    model's cross-entropy on the detached symbols, one backward pass for both optimisers.

    The discriminator is held outside the module's parameters (DistributedDataParallel must not
    wait for gradients it never gets here); CriticObjective trains it."""

    def __init__(self, model: nn.Module, discriminator: nn.Module, bf16: bool):
        super().__init__()
        self.model = model
        self.judge = [discriminator]  # a list: not registered as a submodule
        self.bf16 = bf16

    def forward(self, x: torch.Tensor, gan_on: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        discriminator = self.judge[0]
        pixels = x.shape[2] * x.shape[3]
        discriminator.requires_grad_(False)
        try:
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(x)
                real = discriminator(x) if gan_on else None
                fake = discriminator(out["x_hat"]) if gan_on else None
                losses = self.model.generator_losses(x, out["x_hat"].float(), real, fake, out.get("preserve"))
        finally:
            discriminator.requires_grad_(True)
        context_bits = self.model.context.bits(out["w_hat"].detach(), out["symbols"], out.get("preserve")).mean()
        return losses, context_bits / pixels, out["x_hat"]


class CriticObjective(nn.Module):
    """The discriminator's least-squares loss on real crops and detached reconstructions."""

    def __init__(self, model: nn.Module, discriminator: nn.Module, bf16: bool):
        super().__init__()
        self.discriminator = discriminator
        self.loss = model.discriminator_loss
        self.bf16 = bf16

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.loss(self.discriminator(x), self.discriminator(x_hat.detach()))


def _step(model, coder_step, critic_step, x, gan_on, opt_g, opt_c, opt_d) -> dict[str, float]:
    losses, context_bpp, x_hat = coder_step(x, gan_on)
    opt_g.zero_grad(set_to_none=True)
    opt_c.zero_grad(set_to_none=True)
    (losses["loss"] + context_bpp).backward()
    torch.nn.utils.clip_grad_norm_(list(model.encoder.parameters()) + list(model.generator.parameters()), 10.0)
    opt_g.step()
    opt_c.step()
    losses = {k: v.detach() for k, v in losses.items()}
    stats = {"loss": float(losses["loss"]), "psnr": float(10 * torch.log10(4 / losses["mse"].clamp(min=1e-10))),
             "context_bpp": float(context_bpp.detach())}
    stats.update({key: float(losses[key]) for key in OPTIONAL_TERMS if key in losses})
    if gan_on:
        d_loss = critic_step(x, x_hat)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        stats.update(gan=float(losses["gan"]), feature_matching=float(losses["feature_matching"]),
                     d_loss=float(d_loss.detach()))
    return stats


@torch.no_grad()
def _report(model, images, device, step, log) -> None:
    model.eval()
    psnrs, similarities, haar, ratios = [], [], [], []
    for image in images:
        x = image.to(device)[None]
        out = model(x)
        original, decoded = _pixels(x), _pixels(out["x_hat"])
        psnrs.append(metrics.psnr(original, decoded))
        similarities.append(metrics.ms_ssim(original, decoded))
        haar.append(metrics.haarpsi(original, decoded))
        bits = float(model.context.bits(out["w_hat"], out["symbols"])[0])
        ratios.append(bits / model.rate_bound_bits(x.shape[2], x.shape[3]))
    model.train()
    measured = [s for s in similarities if s is not None]
    ms_ssim = f", MS-SSIM {np.mean(measured):.4f}" if measured else ""
    log(f"validation @ step {step}: PSNR {np.mean(psnrs):.2f} dB{ms_ssim}, HaarPSI {np.mean(haar):.4f}, "
        f"context model at {np.mean(ratios):.1%} of the log2(5) bound")


def _pixels(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> 8-bit (H, W, 3), as a decoder would write it."""
    return to_uint8(image[0].clamp(0, 1)).permute(1, 2, 0).cpu().numpy()


def _discriminator_width(checkpoint_path: Path, options) -> int:
    """A resumed run keeps the discriminator it was started with."""
    if options.resume and checkpoint_path.exists():
        return int(peek_checkpoint(checkpoint_path).get("discriminator_width", 64))
    return family_option(options, "discriminator_width", 64)
