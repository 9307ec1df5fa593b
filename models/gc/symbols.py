"""W's five quantization centres (torch-free: the runtime codes with them too)."""
CENTRES = (-2.0, -1.0, 0.0, 1.0, 2.0)
NUM_SYMBOLS = len(CENTRES)
ZERO_SYMBOL = CENTRES.index(0.0)  # what W holds where selective generation synthesises
