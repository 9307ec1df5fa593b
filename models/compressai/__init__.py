"""Models trained with CompressAI, coded by lic: `lic import compressai` turns CompressAI checkpoints
of `bmshj2018-hyperprior` (Ballé et al. 2018, scale hyperprior) and `mbt2018-mean` (Minnen et al.
2018, mean-scale hyperprior without context) into lic weight files, one network per quality.

The transforms are CompressAI's, layer for layer and parameter for parameter (GDN and the
factorized density share CompressAI's parametrisations, so their tensors are copied, not refit).
What lic changes is the coding: the hyper-synthesis that selects each latent's table runs in lic's
fixed point (``models.core.fixedpoint``), the hyperlatents' tables come from the density as lic's
integer tables around the snapped medians, and the files are lic's container, so they decode
bit-exactly on every machine and thread count, where CompressAI chooses CDFs in floating point.
"""
