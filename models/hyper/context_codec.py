"""`hyper-ctx`'s codec: the checkerboard passes of the channel-conditional context model in fixed
point, and SGA refinement through them."""
from __future__ import annotations

import torch

from ..core import precision
from ..core.annealing import anneal, sga_round
from ..core.entropy import gaussian_likelihood
from ..core.geometry import unit_float
from ..interface import PLAIN, Capabilities, EncodeOptions, ProgressCallback, RefineOptions, check_refine
from .coding import HyperpriorCoding
from .exact import HyperCtxCoding


class HyperCtxCodec(HyperpriorCoding):
    """Codes `hyperlatent` as `hyper` does and `latent` as one ANS stream of 2 × groups chunks,
    each chunk one pass: a group's channels at its anchor (then other) positions, channel-major
    (the passes in fixed point: exact.HyperCtxCoding, which the torch-free runtime runs too)."""

    section_names = ("hyperlatent", "latent")
    optional_sections: tuple[str, ...] = ()
    capabilities = Capabilities(refine=("sga",), prepares=True)
    continuous_quality = True
    exact_class = HyperCtxCoding

    @torch.inference_mode()
    def encode(self, image: torch.Tensor, quality: int, options: EncodeOptions = PLAIN) -> dict[str, bytes]:
        """image: (3, H, W) uint8. Returns the coded sections; options.refine runs SGA first."""
        check_refine(self.capabilities, options, "this model")
        if options.refine is None:
            return self.encode_analysed(*self.analyse(image, quality), quality)
        with torch.inference_mode(False):
            z_hat, y = refine(self, image, quality, options.refine, options.on_progress)
        return self.exact.encode(y.numpy(), z_hat.numpy(), quality)

    def encode_analysed(self, y: torch.Tensor, z: torch.Tensor, quality: float) -> dict[str, bytes]:
        return self.exact.encode(y.numpy(), torch.round(z).to(torch.int64).numpy(), quality)


def refine(codec: HyperCtxCodec, image: torch.Tensor, quality: int, options: RefineOptions,
           on_progress: ProgressCallback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SGA (models/hyper/sga.py) through the context model: the relaxed objective rounds every group's
    latents around the means that the (relaxed) earlier groups predict; candidates are scored by
    their ideal code length under the exact passes and the decoder's pixels. Returns the best
    (z_hat, latents y to code), never worse than the encoder's own."""
    model, q = codec.model, codec.quality_tensor(quality).cpu()
    height, width = image.shape[1:]
    target = unit_float(image.cpu())
    lam = codec.lambda_at(quality)
    y, z = codec.analyse(image, quality)

    def loss(rate_bits, x_hat: torch.Tensor) -> torch.Tensor:
        mse = torch.mean((x_hat[..., :height, :width] - target) ** 2)
        return rate_bits / (height * width) + lam * 255**2 * mse

    def exact(z_hat: torch.Tensor, latents: torch.Tensor) -> float:
        coded = codec.exact.code(latents.numpy(), z_hat.numpy(), quality)
        x_hat = codec.synthesise(torch.from_numpy(coded.residuals), torch.from_numpy(coded.means), quality, height,
                                 width)
        return float(loss(torch.tensor(codec.exact.bits(z_hat.numpy(), coded)), torch.round(x_hat * 255) / 255))

    best = {"z_hat": torch.round(z).to(torch.int64), "y": y}
    best["loss"] = exact(best["z_hat"], y)
    z_proxy, y_proxy = z.clone().requires_grad_(True), y.clone().requires_grad_(True)

    def relaxed_loss(tau: float, generator: torch.Generator) -> torch.Tensor:
        z_soft = sga_round(z_proxy, tau, generator)
        with precision.autocast(codec.compute, codec.device):
            features = model.hyper_features(z_soft, q)
        means, scales, y_hat = model.context_passes(y_proxy, features, lambda v: sga_round(v, tau, generator))
        rate = -(torch.log2(gaussian_likelihood(y_hat, means, scales)).sum()
                 + torch.log2(model.density.likelihood(z_soft)).sum())
        with precision.autocast(codec.compute, codec.device):
            x_hat = model.synthesis(y_hat.contiguous(memory_format=torch.channels_last), q)
        return loss(rate, x_hat)

    def score(step: int) -> float:
        with torch.no_grad():
            z_hat, latents = torch.round(z_proxy).to(torch.int64), y_proxy.detach().clone()
            candidate = exact(z_hat, latents)
        if candidate < best["loss"]:
            best.update(z_hat=z_hat, y=latents, loss=candidate)
        return best["loss"]

    anneal(model, [z_proxy, y_proxy], relaxed_loss, score, options, on_progress)
    return best["z_hat"], best["y"]
