"""Constants the command line shows before any network is loaded (this module imports nothing heavy)."""

DEFAULT_MODEL = "hyper-ctx"
AUTO_MODEL = "auto"  # lic encode --model auto: per image, the default model or one of its variants

# Intra-op threads of every transform that produces decoded pixels, whatever --threads says. On an
# AVX-512 CPU, oneDNN rounded differently with 3 threads than with 1 or 2 (and with 2 on small
# images; docs/notes/2026-11-determinism.md). 4 costs a 2-core CPU little and lets a 4-core CPU use
# all its cores.
SYNTHESIS_THREADS = 4
