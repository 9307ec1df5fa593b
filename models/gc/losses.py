"""The generator's training losses: distortion (MSE, optional MS-SSIM and synthesised-area colours),
least-squares GAN and feature matching, masked to the kept area for selective models."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.similarity import ms_ssim_batch

LAMBDA = 10.0


@dataclass(frozen=True)
class LossWeights:
    """Optional terms of the generator's distortion, each weighted like its MSE (0: left out)."""

    ms_ssim: float = 0.0  # 1 - MS-SSIM over the preserved area (MSE alone favours blotches)
    # Selective training: MSE of 16x16 block means where the image is synthesised. The GAN alone
    # leaves the colour there free (it painted dark frames and off-colour fills); this asks for
    # the block colours that the preserved surroundings suggest and leaves all detail to the GAN.
    synthesised_colour: float = 0.0


def generator_losses(x: torch.Tensor, x_hat: torch.Tensor, real: list[list[torch.Tensor]] | None,
                     fake: list[list[torch.Tensor]] | None, preserve: torch.Tensor | None = None,
                     weights: LossWeights = LossWeights()) -> dict[str, torch.Tensor]:
    """L_GAN + lambda * (distortion + feature matching); without discriminator outputs just
    lambda * distortion. The distortion is the MSE plus the optional terms of `weights`.

    MSE is on images scaled to [-1, 1] like the paper's networks; feature matching is the mean L1
    distance between the discriminator's intermediate features on x and x_hat (pix2pixHD). The
    VGG perceptual term of the paper needs pretrained weights we cannot download and is left out.
    preserve (B, 1, h, w), selective training: both distortions count only where it is 1 (the
    paper masks the distortion; the adversarial term alone shapes the synthesised rest).
    """
    mse = _masked_mean(((x_hat - x) * 2) ** 2, preserve)
    out = {"mse": mse}
    distortion = mse
    if weights.ms_ssim:
        out["ms_ssim"] = _masked_ms_ssim(x, x_hat, preserve)
        distortion = distortion + weights.ms_ssim * (1 - out["ms_ssim"])
    if weights.synthesised_colour and preserve is not None:
        out["synthesised_colour"] = _synthesised_colour_error(x, x_hat, preserve)
        distortion = distortion + weights.synthesised_colour * out["synthesised_colour"]
    if real is None or fake is None:
        out["loss"] = LAMBDA * distortion
        return out
    gan = sum(torch.mean((f[-1].float() - 1) ** 2) for f in fake) / len(fake)
    matching = sum(_masked_mean(torch.abs(fr.float() - rr.detach().float()), preserve)
                   for r, f in zip(real, fake, strict=True) for rr, fr in zip(r[:-1], f[:-1], strict=True))
    matching = matching / (len(fake) * (len(fake[0]) - 1))
    out.update(gan=gan, feature_matching=matching, loss=gan + LAMBDA * (distortion + matching))
    return out


def _masked_ms_ssim(x: torch.Tensor, x_hat: torch.Tensor, preserve: torch.Tensor | None) -> torch.Tensor:
    """Mean MS-SSIM (float32) of x_hat against x, with x in place of x_hat where it is synthesised."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, x_hat = x.float(), x_hat.float()
        if preserve is not None:
            kept = F.interpolate(preserve.float(), size=x.shape[2:], mode="nearest")
            x_hat = kept * x_hat + (1 - kept) * x
        return ms_ssim_batch(x_hat, x).mean()


def _synthesised_colour_error(x: torch.Tensor, x_hat: torch.Tensor, preserve: torch.Tensor) -> torch.Tensor:
    """MSE (images in [-1, 1]) of the block means over the latent positions that are synthesised;
    0 where nothing is."""
    block = x.shape[2] // preserve.shape[2]
    error = (F.avg_pool2d((x_hat - x).float() * 2, block) ** 2).mean(dim=1, keepdim=True)
    synthesised = 1 - preserve.to(error.dtype)
    return (error * synthesised).sum() / synthesised.sum().clamp(min=1)


def _masked_mean(values: torch.Tensor, preserve: torch.Tensor | None) -> torch.Tensor:
    """Mean of values (B, ch, H, W) over the preserved area, the map resampled to H x W."""
    if preserve is None:
        return torch.mean(values)
    weights = F.interpolate(preserve.to(values.dtype), size=values.shape[2:], mode="area")
    return (values * weights).sum() / (weights.sum() * values.shape[1]).clamp(min=1e-6)
