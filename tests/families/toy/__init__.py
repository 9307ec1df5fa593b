"""A toy model family for the conformance suite: one strided convolution, one transposed one, and
zlib for the entropy coder. It exists to prove that a family is one folder (network, codec,
family.py with its registry entry and training options) that plugs in through models/interface.py,
with no change to lic_cli/, bitstream/ or the registry; zoo.discover_families finds it."""
