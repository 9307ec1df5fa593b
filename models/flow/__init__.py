"""Lossy compression with a normalizing flow (Helminger, Djelouah, Gross, Schroers), ``flow``.

The transform is a bijection: a 3-level multi-scale flow of additive couplings (volume
preserving, no log-determinants) maps pixels to latents z0 (coarse, 48 channels at 1/8), z1 (12
at 1/4) and z2 (6 at 1/2). Quantising them with steps (Δ0 per channel, Δ1, Δ2) is the only loss:
one network covers every rate, from coarse steps up to near-lossless, and a decoded image maps
back onto (nearly) the same latents, so decoding and re-encoding does not degrade it.

Priors: z0 is fully factorized; z1 | z0 and z2 | z1 are Gaussian, with mean and scale from small
conv nets φ1, φ2 of the coarser latent. φ runs in exact fixed point at coding time
(``models/core/fixedpoint.py``), so encoder and decoder select the same tables bit for bit, while the
flow itself runs in float (only the symbols must agree).

Coding workflow (``FlowCodec``)::

    z0, z1, z2 = flow(pixels)                       # float
    k0 = round(z0 / Δ0)                             # section "latent"
    μ1, σ1 = φ1(k0 Δ0)  (fixed point)
    k1 = round((z1 - μ1) / Δ1), table by σ1 / Δ1   # section "detail1"
    μ2, σ2 = φ2(μ1 + k1 Δ1) ...                     # section "detail2"

Latents whose table gives the mean a probability above 0.9 are not coded (the decoder uses μ).
A file's sections in order are a progressive stream: with only "latent", the finer latents are
their predicted means (a preview); with "detail1" too, only z2 is predicted.

Training (``rate_distortion``): each sample draws one noise step s (log-uniform), latents get
uniform noise of width s (universal quantization), and the loss is
bits/pixel + distortion_weight / s^2 * MSE(x, x̂) + preview_weight * MSE(x, x̃), MSE in 8-bit
pixel units, where x̃ decodes z0 alone (the progressive preview). Because the distortion of a step s
scales as s^2, weighting it by 1/s^2 trains every rate at the slope a uniform quantizer has there.
"""
