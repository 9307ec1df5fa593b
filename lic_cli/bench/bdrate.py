"""Bjontegaard delta rate between two rate-distortion curves."""
from __future__ import annotations

import math

import numpy as np


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality) -> float | None:
    """Average rate difference of test vs anchor in percent at equal quality (negative = test smaller).

    Classic Bjontegaard (VCEG-M33): fit log(rate) as a cubic polynomial of quality for each curve
    (least squares when there are more than 4 points), integrate both over the quality interval
    where the curves overlap, and compare the mean log rates. None when there is no overlap or
    fewer than 4 points on a curve. Quality must be in dB (PSNR, or MS-SSIM as -10 log10(1 - x)).
    """
    r1, d1 = _clean(anchor_rate, anchor_quality)
    r2, d2 = _clean(test_rate, test_quality)
    if len(d1) < 4 or len(d2) < 4:
        return None
    low, high = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if not high > low:
        return None
    mean1 = _mean_log_rate(np.log(r1), d1, low, high)
    mean2 = _mean_log_rate(np.log(r2), d2, low, high)
    return (math.exp(mean2 - mean1) - 1) * 100


def ms_ssim_db(value: float) -> float:
    return -10 * math.log10(max(1e-12, 1 - value))


def _clean(rate, quality) -> tuple[np.ndarray, np.ndarray]:
    rate, quality = np.asarray(rate, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    keep = np.isfinite(rate) & np.isfinite(quality) & (rate > 0)
    return rate[keep], quality[keep]


def _mean_log_rate(log_rate: np.ndarray, quality: np.ndarray, low: float, high: float) -> float:
    scale = max(1e-9, float(np.ptp(quality)))
    centre = float(quality.mean())
    x = (quality - centre) / scale  # conditioning of the cubic fit
    poly = np.polynomial.Polynomial.fit(x, log_rate, 3, domain=[-1, 1], window=[-1, 1])
    antiderivative = poly.integ()
    a, b = (low - centre) / scale, (high - centre) / scale
    return float((antiderivative(b) - antiderivative(a)) / (b - a))
