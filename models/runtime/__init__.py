"""Coding without torch: what `lic decode` (and a plain `lic encode`) run where a model offers it.

numpy for every value that selects a probability table, in the fixed point of ``fixed.py`` (exact
in float64 whatever the summation order), constriction for entropy coding (``bitstream``), and
ONNX Runtime for the float transforms, from graphs stored without weights (``graphs.py``) whose
tensors are bound at load from the same weight files torch reads. Nothing here imports torch.
"""
