"""Mean-scale hyperprior (Minnen et al. 2018, without the autoregressive context), variable rate.

One network serves every quality: per-quality gain vectors (Cui et al. 2021) scale the latent y
and the hyperlatent z before quantization, so a larger gain means a finer effective step. The
hyper-synthesis transform that selects the Gaussian CDFs runs in fixed point at coding time
(``models/core/fixedpoint.py``) so that encoder and decoder agree bit for bit.
"""
