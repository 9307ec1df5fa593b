"""Wires image files, zoo models and the container together (pixels <-> .lic bytes)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bitstream.container import Container, FormatError, SectionType, check_geometry, pack, unpack
from models import sga, zoo
from models.sga import SgaOptions

from .imageio import ImageData

MODEL_SECTIONS = {"hyperlatent": SectionType.HYPERLATENT, "latent": SectionType.LATENT}


class CodecSession:
    """Loads each model's weights once per process and hands out codecs by zoo name."""

    def __init__(self, weights: dict[str, Path] | None = None, device: str = "cpu", compute: str = "auto"):
        self.weights = weights or {}
        self.device = device
        self.compute = compute
        self._loaded: dict[str, zoo.LoadedCodec] = {}

    def get(self, name: str) -> zoo.LoadedCodec:
        if name not in self._loaded:
            self._loaded[name] = zoo.load_codec(name, self.weights.get(name), self.device, self.compute)
        return self._loaded[name]


@dataclass
class DecodedFile:
    image: ImageData
    container: Container


def encode_image(image: ImageData, loaded: zoo.LoadedCodec, quality: int,
                 refine: SgaOptions | None = None, on_progress=None) -> bytes:
    """quality is the 0-based operating point; refine runs SGA before coding (hyperprior models)."""
    check_geometry(image.width, image.height)
    rgb = image.pixels[:, :, :3] if image.channels != 1 else np.repeat(image.pixels, 3, axis=2)
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)
    if refine is None:
        coded = loaded.codec.encode(tensor, quality)
    else:
        if not hasattr(loaded.codec, "encode_latents"):
            raise ValueError(f"--refine sga needs a hyperprior model; {loaded.name} is not one")
        result = sga.refine(loaded.codec, tensor, quality, refine, on_progress)
        coded = loaded.codec.encode_latents(result.z_hat, result.residuals, quality)
    sections = {MODEL_SECTIONS[name]: payload for name, payload in coded.items()}
    if image.icc_profile:
        sections[SectionType.ICC] = image.icc_profile
    if image.exif:
        sections[SectionType.EXIF] = image.exif
    if image.channels == 4:
        sections[SectionType.ALPHA] = zlib.compress(image.pixels[:, :, 3].tobytes(), 9)
    container = Container(loaded.name, loaded.weights_hash, quality, image.width, image.height,
                          image.channels, sections)
    return pack(container)


def decode_file(data: bytes, session: CodecSession) -> DecodedFile:
    container = unpack(data)
    try:
        loaded = session.get(container.model_id)
    except KeyError:
        raise FormatError(f"file needs model {container.model_id!r}, which this lic does not have") from None
    if container.weights_hash != loaded.weights_hash:
        raise FormatError(f"file was made with {container.model_id} weights {container.weights_hash.hex()}, "
                          f"installed weights are {loaded.weights_hash.hex()} ({loaded.path})")
    if container.quality >= loaded.codec.num_qualities:
        raise FormatError(f"quality index {container.quality} is not an operating point of {container.model_id}")
    names = {section: name for name, section in MODEL_SECTIONS.items()}
    missing = [name for name, section in MODEL_SECTIONS.items() if section not in container.sections]
    if missing:
        raise FormatError(f"file lacks its {', '.join(missing)} section")
    coded = {names[s]: payload for s, payload in container.sections.items() if s in names}
    x_hat = loaded.codec.decode(coded, container.height, container.width, container.quality)
    pixels = torch.round(x_hat * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if container.channels == 1:
        pixels = np.round(pixels.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    elif container.channels == 4:
        alpha = _inflate_exactly(container.sections[SectionType.ALPHA], container.width * container.height)
        pixels = np.concatenate([pixels, alpha.reshape(container.height, container.width, 1)], axis=2)
    image = ImageData(np.ascontiguousarray(pixels), container.sections.get(SectionType.ICC),
                      container.sections.get(SectionType.EXIF))
    return DecodedFile(image, container)


def _inflate_exactly(payload: bytes, size: int) -> np.ndarray:
    inflater = zlib.decompressobj()
    try:
        plane = inflater.decompress(payload, size + 1)
    except zlib.error:
        raise FormatError("alpha section is not valid zlib data") from None
    if len(plane) != size or not inflater.eof or inflater.unconsumed_tail:
        raise FormatError("alpha section does not hold exactly one alpha plane")
    return np.frombuffer(plane, dtype=np.uint8)
