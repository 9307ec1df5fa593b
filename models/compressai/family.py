"""Models imported from CompressAI checkpoints (`lic import compressai`)."""
from __future__ import annotations

from pathlib import Path

from ..interface import Training, ZooEntry
from .codec import ImportedCodec, freeze_coding_tensors, qualities
from .context_codec import ImportedContextCodec
from .conversion import convert
from .elic import build as build_elic
from .elic_codec import ElicCodec
from .network import build

# lic model name (CompressAI's zoo name) -> (the hyper-synthesis predicts means, a context model,
# residual blocks, ELIC)
ARCHITECTURES = {"bmshj2018-hyperprior": (False, False, False, False), "mbt2018-mean": (True, False, False, False),
                 "mbt2018": (True, True, False, False), "cheng2020-anchor": (True, True, True, False),
                 "elic2022-official": (True, True, False, True)}
PAPERS = {"bmshj2018-hyperprior": "scale hyperprior (Ballé et al. 2018)",
          "mbt2018-mean": "mean-scale hyperprior (Minnen et al. 2018, without context)",
          "mbt2018": "joint autoregressive and hierarchical priors (Minnen et al. 2018), decoded in wavefronts",
          "cheng2020-anchor": "residual-block model with a context model (Cheng et al. 2020, anchor), decoded in "
                              "wavefronts",
          "elic2022-official": "ELIC (He et al. 2022): uneven channel groups with a checkerboard context, decoded in "
                               "2 x groups passes"}


def _entry(name: str, mean: bool, context: bool, residual: bool, elic: bool) -> ZooEntry:
    def builder(config: dict):
        return build_elic(config) if elic else build(config, mean, context, residual)

    if elic:
        return ZooEntry(
            name, f"CompressAI's {PAPERS[name]}, imported from its checkpoints (lic import compressai), one network "
            "per quality", build=builder, codec=ElicCodec, weight_file=f"{name}.pt",
            config={"widths": [[192, 320]]}, freeze=freeze_coding_tensors, qualities=qualities,
            training=Training(None),
            tiny_config={"widths": [[8, 16], [8, 24]], "groups": [[4, 4, 8], [4, 4, 8, 8]],
                         "channel_context_widths": [[8, 8], [12, 8]]},
            encoder_prefixes=("g_a.", "h_a."), shipped=False, bench_by_default=False)

    return ZooEntry(
        name, f"CompressAI's {PAPERS[name]}, imported from its checkpoints (lic import compressai), one network "
        "per quality", build=builder,
        codec=ImportedContextCodec if context else ImportedCodec,
        weight_file=f"{name}.pt", config={"widths": [[128, 192]]}, freeze=freeze_coding_tensors,
        qualities=qualities, training=Training(None),
        tiny_config={"widths": [[8, 8], [12, 12]] if residual else [[8, 12], [8, 16]]},
        encoder_prefixes=("g_a.", "h_a."), shipped=False, bench_by_default=False)


ENTRIES = [_entry(name, *kind) for name, kind in ARCHITECTURES.items()]


def import_compressai(arch: str, checkpoints: list[Path], lambdas: tuple[float, ...] = ()):
    """(lic model name, network, card) of CompressAI checkpoints of architecture `arch`; lambdas:
    what each was trained for, if known (`--refine sga` needs them)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} (this lic imports: {', '.join(ARCHITECTURES)})")
    model, card = convert(checkpoints, *ARCHITECTURES[arch], lambdas=lambdas)
    return arch, model, card


IMPORTERS = {"compressai": (tuple(ARCHITECTURES), import_compressai)}
