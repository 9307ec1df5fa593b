"""Codecs under test: classical ones through maintained Python packages, and lic's own models.

Each codec has named settings (one R-D point each) and turns 8-bit RGB pixels into its own real
file bytes and back. Encoder options are spelled out in ``options`` because defaults that cripple
a competitor make a comparison worthless.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Codec:
    name: str
    options: str  # human-readable encoder settings, printed with the results
    settings: tuple[str, ...]  # one R-D point each, in the codec's own terms
    encode: Callable[[np.ndarray, str], bytes]
    decode: Callable[[bytes], np.ndarray]
    threads: str = "1"


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _pillow_encode(fmt: str, **fixed) -> Callable[[np.ndarray, str], bytes]:
    def encode(pixels: np.ndarray, setting: str) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, fmt, **fixed, **_setting_kwargs(setting))
        return buffer.getvalue()
    return encode


def _setting_kwargs(setting: str) -> dict:
    key, _, value = setting.partition("=")
    return {key: float(value) if "." in value else int(value)}


def _jp2_encode(pixels: np.ndarray, setting: str) -> bytes:
    bpp = float(setting.partition("=")[2])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG2000", irreversible=True, quality_mode="rates",
                                 quality_layers=[24.0 / bpp], mct=1)
    return buffer.getvalue()


def _heic_encode(pixels: np.ndarray, setting: str) -> bytes:
    return heic_encode(pixels, int(setting.partition("=")[2]))


def heic_encode(pixels: np.ndarray, qp: int, chroma: int = 444) -> bytes:
    """libheif/x265 intra at a fixed QP, psycho-visual tuning off, one thread."""
    import pillow_heif
    heif = pillow_heif.from_bytes(mode="RGB", size=(pixels.shape[1], pixels.shape[0]), data=pixels.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, chroma=chroma, enc_params={"x265:qp": str(qp), "x265:psy-rd": "0", "x265:psy-rdoq": "0",
                                                 "x265:pools": "1", "x265:frame-threads": "1"})
    return buffer.getvalue()


def heic_decode(data: bytes) -> np.ndarray:
    """HEIC bytes to an (H, W, 3) uint8 array (8-bit, RGB)."""
    import pillow_heif
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif.to_pillow().convert("RGB"), dtype=np.uint8).copy()


def _avif_encode(pixels: np.ndarray, setting: str) -> bytes:
    import pillow_avif  # noqa: F401  (registers the AVIF plugin)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "AVIF", quality=int(setting.partition("=")[2]), speed=4,
                                 subsampling="4:4:4", max_threads=1)
    return buffer.getvalue()


def _avif_decode(data: bytes) -> np.ndarray:
    import pillow_avif  # noqa: F401
    return _pillow_decode(data)


def _jxl_encode(pixels: np.ndarray, setting: str) -> bytes:
    import imagecodecs
    return imagecodecs.jpegxl_encode(pixels, distance=float(setting.partition("=")[2]), effort=7, numthreads=1)


def _jxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs
    return np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1), dtype=np.uint8)[:, :, :3].copy()


def _available(module: str, check: Callable[[], bool] | None = None) -> Callable[[], str | None]:
    def probe() -> str | None:
        try:
            imported = __import__(module)
        except ImportError:
            return f"python package {module!r} not installed (pip install lic[bench])"
        if check is not None and not check():
            return f"{module} lacks the needed codec"
        del imported
        return None
    return probe


def _pillow_feature(feature: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        from PIL import features
        return None if features.check(feature) else f"Pillow was built without {feature}"
    return probe


def _heic_probe() -> str | None:
    missing = _available("pillow_heif")()
    if missing:
        return missing
    import pillow_heif
    return None if pillow_heif.libheif_info().get("HEIF") else "pillow_heif has no HEVC encoder"


def _jxl_probe() -> str | None:
    missing = _available("imagecodecs")()
    if missing:
        return missing
    import imagecodecs
    return None if imagecodecs.JPEGXL.available else "imagecodecs lacks JPEG XL"


QUALITIES = ("quality=5", "quality=10", "quality=20", "quality=30", "quality=40", "quality=50", "quality=60",
             "quality=70", "quality=80", "quality=90", "quality=95")
# WebP reaches lower rates than JPEG (quality 0 is about 0.10 bpp on Kodak, where lic's lowest
# quality sits), and 80 -> 90 is a long step in rate: the extra points keep lic's whole range
# inside WebP's measured curve instead of extrapolating it.
WEBP_QUALITIES = ("quality=0", "quality=2", *QUALITIES[:9], "quality=85", *QUALITIES[9:])

CLASSICAL: dict[str, tuple[Callable[[], Codec], Callable[[], str | None]]] = {
    "jpeg": (lambda: Codec("jpeg", "Pillow/libjpeg, 4:2:0, optimize=True", QUALITIES,
                           _pillow_encode("JPEG", subsampling=2, optimize=True), _pillow_decode),
             _pillow_feature("jpg")),
    # libjpeg's standard Huffman tables, as most encoders write JPEG (the reference numbers)
    "jpeg-default": (lambda: Codec("jpeg-default", "Pillow/libjpeg, 4:2:0, default Huffman tables (optimize=False)",
                                   QUALITIES, _pillow_encode("JPEG", subsampling=2, optimize=False), _pillow_decode),
                     _pillow_feature("jpg")),
    "jpeg444": (lambda: Codec("jpeg444", "Pillow/libjpeg, 4:4:4, optimize=True", QUALITIES,
                              _pillow_encode("JPEG", subsampling=0, optimize=True), _pillow_decode),
                _pillow_feature("jpg")),
    "webp": (lambda: Codec("webp", "Pillow/libwebp, lossy, method=6 (slowest, best)", WEBP_QUALITIES,
                           _pillow_encode("WEBP", method=6), _pillow_decode),
             _pillow_feature("webp")),
    "jp2": (lambda: Codec("jp2",
                          "Pillow/OpenJPEG, irreversible 9/7 wavelet, colour transform on (mct=1), rate-targeted",
                          tuple(f"bpp={b}" for b in (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)),
                          _jp2_encode, _pillow_decode),
            _pillow_feature("jpg_2000")),
    "avif": (lambda: Codec("avif", "pillow-avif-plugin/libavif, 4:4:4, speed 4, 1 thread",
                           tuple(f"quality={q}" for q in (10, 25, 40, 50, 60, 70, 80, 90)),
                           _avif_encode, _avif_decode),
             _available("pillow_avif")),
    "heic": (lambda: Codec("heic", "pillow-heif/x265 (BPG-class): 4:4:4, fixed QP, psy-rd=0, psy-rdoq=0, 1 thread",
                           tuple(f"qp={q}" for q in (18, 22, 26, 30, 34, 38, 42, 46, 50)),
                           _heic_encode, heic_decode),
             _heic_probe),
    "jxl": (lambda: Codec("jxl", "imagecodecs/libjxl, VarDCT by distance, effort 7, 1 thread",
                          tuple(f"distance={d}" for d in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 9.0, 12.0)),
                          _jxl_encode, _jxl_decode),
             _jxl_probe),
}


def classical_codec(name: str) -> tuple[Codec | None, str | None]:
    """(codec, None) if usable here, else (None, reason)."""
    if name not in CLASSICAL:
        raise KeyError(f"unknown codec {name!r} (known: {', '.join(CLASSICAL)})")
    factory, probe = CLASSICAL[name]
    reason = probe()
    return (None, reason) if reason else (factory(), None)
