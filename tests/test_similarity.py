import torch

from models.core import similarity


def test_training_ms_ssim_is_pytorch_msssim_without_its_nan_gradient():
    from pytorch_msssim import ms_ssim
    torch.manual_seed(0)
    a = torch.rand(2, 3, 192, 200)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    reference = ms_ssim(a, b, data_range=1.0, size_average=False)
    assert torch.allclose(similarity.ms_ssim_batch(a, b), reference, atol=1e-5)
    anticorrelated = (1 - a).requires_grad_()  # contrast-structure below zero at every scale
    similarity.ms_ssim_batch(anticorrelated, a).sum().backward()
    assert torch.isfinite(anticorrelated.grad).all()
