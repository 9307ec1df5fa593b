"""The decoding arrangement of the transforms computes the same function as the training modules."""
import torch
from torch import nn

from models.core import layers
from models.core.layers import GDN, deconv, run_decoder, subpixel_weight


def test_subpixel_weight_matches_the_transposed_convolution():
    torch.manual_seed(0)
    layer = deconv(6, 3)
    x = torch.randn(1, 6, 5, 7)
    shuffled = nn.functional.pixel_shuffle(
        nn.functional.conv2d(x, subpixel_weight(layer), layer.bias.repeat_interleave(4), padding=1), 2)
    torch.testing.assert_close(shuffled, layer(x), rtol=1e-5, atol=1e-5)


def test_run_decoder_equals_the_modules(monkeypatch):
    monkeypatch.setattr(layers, "GDN_BLOCK_ROWS", 100)  # several blocks and a partial one
    torch.manual_seed(1)
    stack = nn.Sequential(deconv(8, 5), GDN(5, inverse=True), deconv(5, 5), GDN(5, inverse=True), deconv(5, 3))
    for gdn in (stack[1], stack[3]):
        gdn.gamma.raw.data += 0.05 * torch.rand_like(gdn.gamma.raw)
    x = torch.randn(1, 8, 9, 6).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = stack(x)
        got = run_decoder(stack, x.clone())
    assert got.shape == (1, 3, 72, 48)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
