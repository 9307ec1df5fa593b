"""Reading and writing image files: pixels plus the metadata that must survive a round trip."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bitstream.container import MAX_PIXELS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".bmp"}
LOSSLESS_OUTPUT = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM",
                   ".pnm": "PPM", ".bmp": "BMP", ".webp": "WEBP"}
MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # Pillow's mode of an image of 1, 3 or 4 channels
Image.MAX_IMAGE_PIXELS = 1 << 25  # same limit as the container; Pillow raises beyond 2x this


class ImageReadError(ValueError):
    """The input is not an image lic can encode; the message is one line."""


@dataclass
class ImageData:
    pixels: np.ndarray  # (H, W, C) uint8 with C in {1, 3, 4}
    icc_profile: bytes | None = None
    exif: bytes | None = None
    warnings: list[str] = field(default_factory=list)
    comment: str | None = None  # written as a text chunk where the output format has one (PNG)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]


def list_images(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a directory")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_rgb_array(path: Path) -> np.ndarray:
    """An image as (H, W, 3) uint8 RGB (training and evaluation, where metadata does not matter)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_image(data: bytes, frame: int | None = None, max_pixels: int = MAX_PIXELS) -> ImageData:
    """Decode image bytes (PNG, JPEG, WebP, TIFF, PPM/PGM, BMP) into 8-bit grey, RGB or RGBA.

    frame: which frame of an animation or multi-page file (0-based); such files are refused
    without it. Images over max_pixels are refused from their header, before their pixels load."""
    if not data:
        raise ImageReadError("empty input")
    try:
        with warnings.catch_warnings():
            # Pillow warns (two lines on stderr) between its limit and twice it; our own check speaks.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image, max_pixels)
            _select_frame(image, frame)
            sixteen_bit = _has_16bit_samples(image)  # must be asked before load() clears image.tile
            image.load()
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(
            "cannot read image (not a format lic reads: PNG, JPEG, WebP, TIFF, PPM/PGM, BMP)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"cannot read image ({_first_line(error)})") from None
    except Image.DecompressionBombError:
        raise ImageReadError("image is larger than lic's 33.5-megapixel limit") from None
    return image_data(image, sixteen_bit)


def read_mask(data: bytes, width: int, height: int) -> np.ndarray:
    """A preservation mask (any image: white = keep, black = may be synthesised; alpha ignored) as
    (height, width) booleans, resampled to that size: True where its grey level is at least 128."""
    return mask_pixels(read_image(data), width, height)


def mask_pixels(mask: ImageData, width: int, height: int) -> np.ndarray:
    """read_mask for an image already read."""
    grey = Image.fromarray(mask.pixels[:, :, :3] if mask.channels != 1 else mask.pixels[:, :, 0]).convert("L")
    if grey.size != (width, height):
        grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(grey) >= 128


def image_data(image: Image.Image, sixteen_bit: bool = False) -> ImageData:
    """A loaded Pillow image as 8-bit grey, RGB or RGBA pixels with its ICC profile and EXIF;
    warnings say what was converted. sixteen_bit: the file held 16-bit samples that Pillow has
    already reduced."""
    notes: list[str] = []
    pixels = _to_8bit_pixels(image, notes)
    if sixteen_bit and not notes:
        notes.append("16-bit image converted to 8 bits")
    return ImageData(pixels, image.info.get("icc_profile") or None, _exif_bytes(image), notes)


def pil_image(image: ImageData) -> Image.Image:
    """Decoded pixels as a Pillow image, with the ICC profile, EXIF and comment in its info."""
    mode = MODES[image.channels]
    picture = Image.fromarray(image.pixels[:, :, 0] if mode == "L" else image.pixels, mode)
    for key, value in (("icc_profile", image.icc_profile), ("exif", image.exif), ("comment", image.comment)):
        if value:
            picture.info[key] = value
    return picture


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageReadError(f"image of {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
                             f"(--max-pixels; at most {MAX_PIXELS})")


def _select_frame(image: Image.Image, frame: int | None) -> None:
    frames = getattr(image, "n_frames", 1)
    if frame is None:
        if frames > 1:
            raise ImageReadError(f"holds {frames} frames (an animation or a multi-page file); lic codes one "
                                 f"image: choose it with --frame 0..{frames - 1}")
        return
    if not 0 <= frame < frames:
        raise ImageReadError(f"has no frame {frame} (it holds {frames}: --frame 0..{frames - 1})")
    image.seek(frame)


def _to_8bit_pixels(image: Image.Image, warnings: list[str]) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "I" and (values.min() < 0 or values.max() > 65535):
            raise ImageReadError("32-bit integer images are not supported")
        warnings.append("16-bit image converted to 8 bits")
        return np.round(values / 257.0).astype(np.uint8)[:, :, None]
    if mode == "F":
        raise ImageReadError("floating-point images are not supported")
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8)[:, :, None].copy()
    if mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8).copy()
    if mode in ("LA", "PA", "RGBa", "La"):
        warnings.append(f"{mode} image coded as RGBA")
        return np.asarray(image.convert("RGBA"), dtype=np.uint8).copy()
    if mode in ("RGB", "RGBA"):
        return np.asarray(image, dtype=np.uint8).copy()
    warnings.append(f"{mode} image converted to RGB")
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _has_16bit_samples(image: Image.Image) -> bool:
    """Pillow silently reduces 48/64-bit PNGs to 8 bits (keeping the high byte); the tile raw mode tells."""
    return any(";16" in str(getattr(tile, "args", "")) for tile in (image.tile or []))


def _exif_bytes(image: Image.Image) -> bytes | None:
    exif = image.info.get("exif")
    if isinstance(exif, bytes) and exif:
        return exif
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def check_output_suffix(suffix: str) -> None:
    """Refuse an output name whose format lic does not write (before anything is decoded)."""
    if suffix.lower() not in LOSSLESS_OUTPUT:
        raise ImageReadError(f"cannot write {suffix!r}: lic writes lossless formats "
                             f"({', '.join(sorted(LOSSLESS_OUTPUT))})")


def encode_image_file(image: ImageData, suffix: str) -> bytes:
    """Serialise decoded pixels in a lossless format chosen by suffix, with ICC/EXIF where it fits."""
    suffix = suffix.lower() or ".png"
    check_output_suffix(suffix)
    fmt = LOSSLESS_OUTPUT[suffix]
    if fmt == "PPM" and image.channels == 4:
        raise ImageReadError("PPM cannot hold an alpha channel; write .png or .tiff")
    picture = pil_image(ImageData(image.pixels))
    options: dict = {}
    if fmt in ("PNG", "TIFF", "WEBP"):
        if image.icc_profile:
            options["icc_profile"] = image.icc_profile
        if image.exif:
            options["exif"] = image.exif
    if fmt == "WEBP":
        options.update(lossless=True, quality=100, exact=True)
    if fmt == "PNG":
        options["compress_level"] = 6
        if image.comment:
            from PIL.PngImagePlugin import PngInfo
            text = PngInfo()
            text.add_itxt("Comment", image.comment)
            options["pnginfo"] = text
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()
