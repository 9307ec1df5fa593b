"""Machinery the families share: entropy models and their integer tables, fixed-point layers,
tiling, precision, similarity measures, SGA and the conditional source-entropy regularizer."""
