"""Generative compression at extreme rates (Agustsson et al. 2019, "GC"): `gc-c2`, `gc-c4`, `gc-c8`.

Encoder E (c7s1-w/16, d w/8, d w/4, d w/2, d w, c3s1-C) maps an image to W of size H/16 x W/16 x C,
quantized to the five centres {-2, -1, 0, 1, 2} (hard forward, soft backward). Generator G
(c3s1-w, 9 residual blocks, u w/2 ... u w/16, c7s1-3) decodes it; a normalisation follows every
convolution but the last (ChannelNorm, not the paper's instance norm: see ChannelNorm2d). A
multi-scale discriminator (pix2pixHD, 3 scales) and a least-squares GAN loss with
lambda * (MSE + feature matching), lambda = 10, train E and G; the rate is bounded by the
architecture (beta = 0): dim(W) * log2(5) bits.

The paper's width is w = 960 (~150 M parameters). Ours is a configuration value (default 192:
every layer at 1/5 of the paper's width) so that a weight file stays under 16 MiB and trains on
the compute we have; the topology is the paper's.

W is entropy coded two ways (both reported against the bound):
- static: per-image, per-channel symbol frequencies stored in the file (the paper's coder);
- context: a small learned model predicts each symbol from the channels before it and, within a
  channel, from a checkerboard of already-decoded neighbours (2C parallel decoding steps). It is
  trained concurrently on the detached symbols (cross-entropy) and evaluated in exact fixed point
  with an integer softmax, so encoder and decoder derive identical probabilities.
"""
