"""`lic import compressai`: CompressAI checkpoints (every key layout CompressAI has used) become lic
weight files whose transforms compute what CompressAI's do, and whose files round-trip. Tiny
randomly initialised CompressAI models; skipped where CompressAI is not installed (`make test`
installs it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lic_cli.cli import main
from lic_cli.codec import CodecSession, decode_file, encode_image
from lic_cli.imageio import ImageData

from .compressai_support import compressai_models, elic_passes_against_compressai
from .conftest import smooth_image

cai = compressai_models()
pytestmark = pytest.mark.skipif(cai is None, reason="CompressAI is not installed")
CLASSES = {"bmshj2018-hyperprior": "ScaleHyperprior", "mbt2018-mean": "MeanScaleHyperprior",
           "mbt2018": "JointAutoregressiveHierarchicalPriors", "cheng2020-anchor": "Cheng2020Anchor",
           "elic2022-official": "Elic2022Official"}
WIDTHS = ((8, 12), (8, 16))
ELIC_GROUPS = ((4, 4, 4), (4, 4, 8))  # uneven groups adding up to M (CompressAI's default needs M > 128)


def compressai_network(arch: str, quality: int):
    n, m = WIDTHS[quality]
    if arch == "cheng2020-anchor":
        return getattr(cai, CLASSES[arch])(n)
    if arch == "elic2022-official":
        return getattr(cai, CLASSES[arch])(n, m, groups=list(ELIC_GROUPS[quality]))
    return getattr(cai, CLASSES[arch])(n, m)


def hyper_modules(net):
    """(h_a, h_s, entropy bottleneck) of a CompressAI network, in either of its layouts."""
    hyper = net.latent_codec["hyper"] if hasattr(net, "latent_codec") else net
    return hyper.h_a, hyper.h_s, hyper.entropy_bottleneck


def zoo_layout(state: dict) -> dict:
    """The key layout of CompressAI's zoo files: DataParallel's prefix, the density as lists."""
    renamed = {}
    for key, value in state.items():
        for part in ("matrices", "biases", "factors"):
            key = key.replace(f"entropy_bottleneck.{part}.", f"entropy_bottleneck._{part}.")
        renamed["module." + key] = value
    return renamed


@pytest.fixture(scope="module", params=sorted(CLASSES))
def imported(request, tmp_path_factory):
    """(architecture, CompressAI networks, checkpoint paths, lic weight file)."""
    arch, folder = request.param, tmp_path_factory.mktemp(request.param)
    torch.manual_seed(3)
    nets, paths = [], []
    for quality in range(len(WIDTHS)):
        net = compressai_network(arch, quality)
        with torch.no_grad():  # away from the initialisation, so that the latents are not all zero
            for parameter in net.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        net.update(force=True)
        path = folder / f"q{quality + 1}.pth"
        torch.save({"state_dict": net.state_dict()} if quality == 0 else zoo_layout(net.state_dict()), path)
        nets.append(net.eval())
        paths.append(path)
    weights = folder / "imported.pt"
    result = CliRunner().invoke(main, ["import", "compressai", "--arch", arch, *map(str, paths), "-o", str(weights)])
    assert result.exit_code == 0, result.output
    return arch, nets, paths, weights


def test_the_transforms_compute_what_compressais_do(imported):
    arch, nets, _, weights = imported
    model = CodecSession({arch: weights}, compute="fp32").get(arch).codec.model
    x = torch.from_numpy(smooth_image(128, 192)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        for quality, net in enumerate(nets):
            h_a, h_s, bottleneck = hyper_modules(net)
            y = net.g_a(x)
            assert torch.allclose(model.g_a[quality](x), y, atol=1e-5)
            h_in = y if model.config.mean else y.abs()
            assert torch.allclose(model.h_a[quality](h_in), h_a(h_in), atol=1e-5)
            z = torch.round(h_a(h_in))
            assert torch.allclose(model.h_s[quality](z), h_s(z), atol=1e-5)
            assert torch.allclose(model.g_s[quality](torch.round(y)), net.g_s(torch.round(y)), atol=1e-5)
            assert torch.equal(model.medians[quality], bottleneck.quantiles[:, 0, 1])
            if hasattr(net, "context_prediction"):  # ELIC's context model: the test below
                y_hat = torch.round(y)
                context = net.context_prediction(y_hat)
                assert torch.allclose(model.context_prediction[quality](y_hat), context, atol=1e-5)
                both = torch.cat([net.h_s(z), context], dim=1)
                assert torch.allclose(model.entropy_parameters[quality](both), net.entropy_parameters(both), atol=1e-5)


def test_an_imported_model_codes_files_that_decode_alike_on_any_thread_count(imported):
    arch, _, _, weights = imported
    session = CodecSession({arch: weights}, compute="fp32")
    loaded = session.get(arch)
    assert loaded.codec.qualities.count == len(WIDTHS)
    pixels = smooth_image(70, 90)
    for quality in range(len(WIDTHS)):
        data = encode_image(ImageData(pixels), loaded, quality)
        decoded = decode_file(data, session).images[0].pixels
        torch.set_num_threads(1)
        try:
            again = decode_file(data, session).images[0].pixels
        finally:
            torch.set_num_threads(2)
        assert decoded.shape == pixels.shape and np.array_equal(decoded, again)


def test_the_weight_file_says_which_model_it_holds_and_where_it_came_from(imported, tmp_path):
    arch, _, paths, weights = imported
    source = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(smooth_image(40, 60)).save(source)
    runner = CliRunner()
    encoded = runner.invoke(main, ["encode", str(source), "-o", str(tmp_path / "a.lic"), "--weights", str(weights)])
    assert encoded.exit_code == 0, encoded.output
    decoded = runner.invoke(main, ["decode", str(tmp_path / "a.lic"), "-o", str(tmp_path / "b.png"), "--weights",
                                   str(weights)])
    assert decoded.exit_code == 0, decoded.output
    info = runner.invoke(main, ["info", str(tmp_path / "a.lic")])
    assert arch in info.output
    from models import zoo

    assert all(path.name in zoo.load_weight_card(weights)["imported_from"] for path in paths)


def test_unknown_layouts_are_refused_in_one_line_naming_the_keys(imported, tmp_path):
    arch, nets, _, _ = imported
    state = dict(nets[0].state_dict())
    h_a_bias = "latent_codec.hyper.h_a.0.bias" if arch == "elic2022-official" else "h_a.0.bias"
    state.pop(h_a_bias)
    state["g_s.9.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    result = CliRunner().invoke(main, ["import", "compressai", "--arch", arch, str(broken), "-o",
                                       str(tmp_path / "x.pt")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1
    assert "unexpected g_s.9.weight" in lines[0] and f"missing {h_a_bias}" in lines[0]
    other = "mbt2018-mean" if arch == "bmshj2018-hyperprior" else "bmshj2018-hyperprior"
    wrong = CliRunner().invoke(main, ["import", "compressai", "--arch", other, str(imported[2][0]), "-o",
                                      str(tmp_path / "y.pt")])
    assert wrong.exit_code == 2 and len(wrong.output.strip().splitlines()) == 1 and "architecture" in wrong.output


def test_sga_refines_imported_hyperpriors_given_their_lambdas(imported, tmp_path):
    arch, _, paths, _ = imported
    weights = tmp_path / "with-lambdas.pt"
    result = CliRunner().invoke(main, ["import", "compressai", "--arch", arch, *map(str, paths), "-o", str(weights),
                                       "--lambdas", "0.0035,0.013"])
    assert result.exit_code == 0, result.output
    session = CodecSession({arch: weights}, compute="fp32")
    codec = session.get(arch).codec
    if codec.model.config.context:
        assert codec.capabilities.refine == ()
        return
    from models.compressai.sga import ImportedRateDistortion, refine
    from models.interface import EncodeOptions, Geometry, RefineOptions

    image = torch.from_numpy(smooth_image(64, 64)).permute(2, 0, 1).contiguous()
    objective = ImportedRateDistortion(codec, image, 1)
    plain = codec.encode(image, 1)
    symbols, residuals = refine(codec, image, 1, RefineOptions(steps=6, evaluate_every=2))
    plain_symbols = codec.decode_symbols(plain, Geometry(64, 64), 1)
    assert objective.exact(symbols, residuals) <= objective.exact(*(torch.from_numpy(s) for s in plain_symbols))
    refined = codec.encode(image, 1, EncodeOptions(refine=RefineOptions(steps=6, evaluate_every=2)))
    assert codec.decode(refined, Geometry(64, 64), 1).shape == (3, 64, 64)


@pytest.fixture(scope="module")
def elic(tmp_path_factory):
    """(CompressAI's ELIC network, its lic codec) at one quality."""
    torch.manual_seed(5)
    net = compressai_network("elic2022-official", 1)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    net.update(force=True)
    path = tmp_path_factory.mktemp("elic") / "elic.pth"
    torch.save(net.state_dict(), path)
    weights = path.with_suffix(".pt")
    result = CliRunner().invoke(main, ["import", "compressai", "--arch", "elic2022-official", str(path), "-o",
                                       str(weights)])
    assert result.exit_code == 0, result.output
    return net.eval(), CodecSession({"elic2022-official": weights}, compute="fp32").get("elic2022-official").codec


def test_elic_passes_compute_compressais_gaussian_parameters_in_fixed_point(elic):
    """lic's exact passes against CompressAI's float context model on the same decoded latents:
    every group, anchors and the rest."""
    net, codec = elic
    image = torch.from_numpy(smooth_image(64, 128)).permute(2, 0, 1).contiguous()
    y, z = codec.analyse(image, 0)
    z_symbols = codec.hyperlatent_symbols(z, 0)
    for means, reference, table_ids, reference_ids in elic_passes_against_compressai(net, codec, 0, y, z_symbols):
        assert np.abs(means - reference).max() < 0.02
        assert np.mean(table_ids == reference_ids) > 0.9
