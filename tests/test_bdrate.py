import math

import numpy as np
import pytest

from lic_cli.bench.bdrate import bd_rate, ms_ssim_db

PSNR = np.array([30.0, 32.0, 34.0, 36.0, 38.0])


def test_half_the_rate_everywhere_is_minus_fifty_percent():
    anchor = 0.1 * 1.5 ** (PSNR - 30)
    assert bd_rate(anchor, PSNR, anchor / 2, PSNR) == pytest.approx(-50.0, abs=1e-9)


def test_twenty_percent_more_rate_at_shifted_points():
    """log10 R = D/10 for the anchor; the test curve is 1.2x that, sampled at other qualities."""
    anchor = 10 ** (PSNR / 10)
    test_psnr = PSNR + 1.0
    test = 1.2 * 10 ** (test_psnr / 10)
    assert bd_rate(anchor, PSNR, test, test_psnr) == pytest.approx(20.0, abs=1e-9)


def test_hand_checked_overlap_only():
    """Anchor log R = 0.1 D, test log R = 0.1 D - 0.05 D + 1.5 (a straight line crossing it):
    over the overlap [32, 38] the mean log difference is mean(1.5 - 0.05 D) = 1.5 - 0.05*35 = -0.25,
    so BD-rate = exp(-0.25) - 1 = -22.12%. The anchor's points outside [32, 38] must not matter."""
    anchor_psnr = np.array([28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 40.0])
    test_psnr = np.array([32.0, 34.0, 36.0, 38.0])
    anchor = np.exp(0.1 * anchor_psnr)
    test = np.exp(0.05 * test_psnr + 1.5)
    assert bd_rate(anchor, anchor_psnr, test, test_psnr) == pytest.approx((math.exp(-0.25) - 1) * 100, abs=1e-6)


def test_no_overlap_or_too_few_points_gives_none():
    assert bd_rate([1, 2, 3, 4], [20, 21, 22, 23], [1, 2, 3, 4], [30, 31, 32, 33]) is None
    assert bd_rate([1, 2, 3], [20, 21, 22], [1, 2, 3], [20, 21, 22]) is None


def test_ms_ssim_in_decibels():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
