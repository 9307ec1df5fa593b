"""Conditional probability models for deep image compression (Mentzer et al. 2018): `cpm`.

The network (one for every operating point, see "Qualities" below)::

    x -> normalise -> conv5/2 -> conv5/2 -> residual trunk -> conv5/2 -> [importance | z]   (1 + K channels, 1/8)
    z * gain_q -> nearest of L learned centres -> z_hat (hard forward, soft assignment backward)
    importance y = K * sigmoid(a_q * raw + b_q); channel k of a position is coded iff y > k
    coded = z_hat * mask -> * inverse gain_q -> deconv5/2 -> residual trunk -> deconv5/2 -> deconv5/2 -> x_hat

Symbols outside the mask are never coded: the decoder knows them from the importance map, which
is coded first (``ImportanceCoder``). The coded symbols are coded with the probabilities of a
masked 3D CNN over the symbol volume (channels as depth, ``ContextModel``): each layer's kernel
covers the current and the previous channel slice (2x3x3), the first layer excludes the centre.
Its inputs are the causal symbol values, the importance mask (known in full before the symbols)
and the quality. Trained concurrently (cross-entropy); the auto-encoder pays
``beta * max(H - H_target_q, 0)`` for rate and ``1 - MS-SSIM`` for distortion.

Coding workflow (``CpmCodec``): the encoder runs the context model once over the whole volume, in
exact fixed point (``FixedContext``: the arithmetic of ``models/core/fixedpoint.py``, integer softmax),
and pushes every coded symbol onto one ANS stack. The decoder cannot run it in parallel (each
symbol's probabilities need the symbols before it), nor once per symbol (~200k network runs per
Kodak image). It decodes in wavefronts: with 2x3x3 masked kernels every layer's activation at
(c, h, w) needs only activations at positions with a smaller t = 4c + 2h + w (and, for hidden
layers, its own position one layer down), so step t computes every layer at the positions of
that t, reusing the cached activations of earlier steps, then decodes their symbols. A Kodak
image takes ~350 steps. Large images are coded in independent context tiles of 128 latents.

Qualities: the paper trains one network per operating point. With our compute (a CPU) one
network serves all of them: per-quality gains on z (as in `hyper`), a per-quality affine map
of the importance logit and a per-quality rate target, trained together (each sample draws a
quality), so one run trains every operating point.
"""
