"""CompressAI for tests and benchmarks, where it is installed: its package imports modules for
datasets, plots and point clouds (torchvision, pandas, matplotlib, torch_geometric, ...) that its
codec path never calls; those that are not installed are replaced by empty stand-ins."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from unittest import mock

UNUSED_BY_THE_CODEC_PATH = ("torchvision", "torch_geometric", "pandas", "matplotlib", "plotly", "requests")


class StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook answering for UNUSED_BY_THE_CODEC_PATH with mocks."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in UNUSED_BY_THE_CODEC_PATH or self.installed(name, path):
            return None
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def installed(self, name: str, path) -> bool:
        """Whether another finder has the real module (then it is imported as usual, e.g. matplotlib
        for the benchmark plots)."""
        top = name.split(".")[0]
        if top in sys.modules and not isinstance(sys.modules[top], mock.MagicMock):
            return True
        return any(finder.find_spec(name, path) is not None for finder in sys.meta_path
                   if finder is not self and hasattr(finder, "find_spec"))

    def create_module(self, spec):
        module = mock.MagicMock(name=spec.name)
        module.__path__, module.__spec__ = [], spec
        return module

    def exec_module(self, module):
        pass


def compressai_models():
    """compressai.models, or None where CompressAI (or a dependency its codec path needs) is missing.
    The stand-ins answer only while CompressAI imports, and leave no trace in sys.modules: a later
    `import matplotlib` elsewhere gets the real one, or fails as it would have."""
    if importlib.util.find_spec("compressai") is None:
        return None
    if "compressai.models" in sys.modules:
        return sys.modules["compressai.models"]
    hook = StandIns()
    sys.meta_path.insert(0, hook)
    try:
        import compressai.models
        import compressai.zoo.pretrained  # load_pretrained, for checkpoints in the zoo's layout
    except ImportError:
        return None
    finally:
        sys.meta_path.remove(hook)
        for name in [name for name, module in sys.modules.items() if isinstance(module, mock.MagicMock)]:
            del sys.modules[name]
    return compressai.models


def elic_parameters(net, y_hat, z_hat):
    """(scales, means), each (1, M, h, w), that CompressAI's ELIC (elic2022-official) predicts for
    decoded latents y_hat from hyperlatents z_hat: every group from the earlier groups and the
    hyper-synthesis, anchors (row + column even) with a zero spatial context, the other positions
    from the group's anchors. The reference for lic's fixed-point passes."""
    import torch

    codecs = net.latent_codec["y"]
    side = net.latent_codec["hyper"].h_s(z_hat)
    height, width = y_hat.shape[2:]
    anchors = (torch.arange(height)[:, None] + torch.arange(width)[None, :]) % 2 == 0
    groups = list(y_hat.split(list(codecs.groups), dim=1))
    scales, means = [], []
    with torch.no_grad():
        for group, latents in enumerate(groups):
            context = codecs.latent_codec[f"y{group}"]
            params = codecs._get_ctx_params(group, side, groups)
            spatial = context.context_prediction(latents * anchors)
            first = context.entropy_parameters(torch.cat([torch.zeros_like(spatial), params], dim=1))
            second = context.entropy_parameters(torch.cat([spatial, params], dim=1))
            group_scales, group_means = torch.where(anchors, first, second).chunk(2, dim=1)
            scales.append(group_scales)
            means.append(group_means)
    return torch.cat(scales, dim=1), torch.cat(means, dim=1)


def elic_passes_against_compressai(net, codec, quality: int, y, z_symbols):
    """For each pass of lic's ELIC encoder on latents y (1, M, h, w) and hyperlatent symbols:
    (lic's exact means, CompressAI's float means, lic's table ids, the ids CompressAI's scales
    select), CompressAI's context model fed with the latents lic decodes (elic_parameters)."""
    import numpy as np
    import torch

    latents, passes = y[0].double().numpy(), []

    def round_latents(means, table_ids, channels, positions):
        flat = latents[channels[0] : channels[1]].reshape(channels[1] - channels[0], -1)
        passes.append((channels, positions, means, table_ids))
        return np.round(flat[:, positions] - means).astype(np.int64)

    exact = codec.exact
    residuals, means = exact.traverse(z_symbols.numpy(), quality, latents.shape[1:], round_latents)
    z_hat = (z_symbols.double() + torch.from_numpy(exact.medians[quality])[None, :, None, None]).float()
    scales, want = (t[0].flatten(1).double().numpy()
                    for t in elic_parameters(net, torch.from_numpy(residuals + means)[None].float(), z_hat))
    return [(pass_means, want[start:stop, positions], table_ids,
             exact.scale_index(scales[start:stop, positions]).ravel())
            for (start, stop), positions, pass_means, table_ids in passes]
