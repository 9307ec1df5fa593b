"""Models imported from CompressAI checkpoints (`lic import compressai`)."""
from __future__ import annotations

from pathlib import Path

from ..interface import Training, ZooEntry
from .codec import ImportedCodec, freeze_coding_tensors
from .conversion import convert
from .elic import build as build_elic
from .layout import ARCHITECTURES, ENCODER_PREFIXES, Architecture, qualities
from .network import build

PAPERS = {"bmshj2018-hyperprior": "scale hyperprior (Ballé et al. 2018)",
          "mbt2018-mean": "mean-scale hyperprior (Minnen et al. 2018, without context)",
          "mbt2018": "joint autoregressive and hierarchical priors (Minnen et al. 2018), decoded in wavefronts",
          "cheng2020-anchor": "residual-block model with a context model (Cheng et al. 2020, anchor), decoded in "
                              "wavefronts",
          "elic2022-official": "ELIC (He et al. 2022): uneven channel groups with a checkerboard context, decoded in "
                               "2 x groups passes"}


def _entry(name: str, architecture: Architecture) -> ZooEntry:
    def builder(config: dict):
        if architecture.elic:
            return build_elic(config)
        return build(config, architecture.mean, architecture.context, architecture.residual)

    if architecture.elic:
        config = {"widths": [[192, 320]]}
        tiny = {"widths": [[8, 16], [8, 24]], "groups": [[4, 4, 8], [4, 4, 8, 8]],
                "channel_context_widths": [[8, 8], [12, 8]]}
    else:
        config = {"widths": [[128, 192]]}
        tiny = {"widths": [[8, 8], [12, 12]] if architecture.residual else [[8, 12], [8, 16]]}
    return ZooEntry(
        name, f"CompressAI's {PAPERS[name]}, imported from its checkpoints (lic import compressai), one network "
        "per quality", build=builder, codec=ImportedCodec, weight_file=f"{name}.pt", config=config,
        freeze=freeze_coding_tensors, qualities=qualities, training=Training(None), tiny_config=tiny,
        encoder_prefixes=ENCODER_PREFIXES, shipped=False, bench_by_default=False)


ENTRIES = [_entry(name, architecture) for name, architecture in ARCHITECTURES.items()]


def import_compressai(arch: str, checkpoints: list[Path], lambdas: tuple[float, ...] = ()):
    """(lic model name, network, card) of CompressAI checkpoints of architecture `arch`; lambdas:
    what each was trained for, if known (`--refine sga` needs them)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r} (this lic imports: {', '.join(ARCHITECTURES)})")
    kind = ARCHITECTURES[arch]
    model, card = convert(checkpoints, kind.mean, kind.context, kind.residual, kind.elic, lambdas=lambdas)
    return arch, model, card


IMPORTERS = {"compressai": (tuple(ARCHITECTURES), import_compressai)}


def _runtime_graphs(model) -> dict:
    """What the torch-free runtime runs on ONNX Runtime (models/runtime/export.py), exported from
    the first quality's networks of any configuration: graphs that take parameters of any width,
    so that one serves every checkpoint of the architecture."""
    import torch

    from ..core.layers import with_subpixel_convolutions

    latents = torch.zeros(1, model.config.widths[0][1], 4, 4)
    plain = torch.contiguous_format
    return {"synthesis": (with_subpixel_convolutions(model.g_s[0].to(memory_format=plain)), latents, "g_s.", True),
            "analysis": (model.g_a[0].to(memory_format=plain), torch.zeros(1, 3, 64, 64), "g_a.", True),
            "hyper_analysis": (model.h_a[0].to(memory_format=plain), latents, "h_a.", True)}


GRAPHS = {name: _runtime_graphs for name in ARCHITECTURES}
