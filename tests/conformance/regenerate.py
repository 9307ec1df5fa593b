"""Write the conformance files: small .lic files of every shipped model (every section type,
bits-back included), the SHA-256 of their entropy-decoded symbols, and their fp32-decoded pixels.
tests/test_conformance_files.py decodes them on every CI machine. After shipping new weights, move
the replaced model's files to legacy/ (with their manifest entries, so that they stay tested),
then write that model's files again:

    python tests/conformance/regenerate.py [MODEL ...]     # no MODEL: every file
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from bitstream.container import unpack
from lic_cli.codec import CodecSession, decode_file, decode_symbols, encode_album, encode_image
from lic_cli.imageio import ImageData, encode_image_file
from models.interface import EncodeOptions

HERE = Path(__file__).parent
SOURCE = HERE.parents[1] / "assets" / "kodim23.png"


def symbols_sha256(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
    return digest.hexdigest()


def crop(top: int, left: int, height: int = 64, width: int = 96) -> np.ndarray:
    return np.asarray(Image.open(SOURCE).convert("RGB"))[top:top + height, left:left + width].copy()


def main(models: list[str]) -> None:
    session = CodecSession(compute="fp32")
    rgb = crop(200, 300)
    rgba = np.concatenate([rgb, (np.arange(64 * 96).reshape(64, 96, 1) % 256).astype(np.uint8)], axis=2)
    grey = crop(100, 500).mean(axis=2, keepdims=True).round().astype(np.uint8)
    exif = Image.Exif()
    exif[0x010E] = "lic conformance file"
    keep_box = np.zeros(rgb.shape[:2], dtype=bool)
    keep_box[16:48, 20:60] = True
    tagged = ImageData(rgba, icc_profile=b"not a real ICC profile, carried verbatim", exif=exif.tobytes())
    files = {
        "hyper-q1-rgba-icc-exif.lic": encode_image(tagged, session.get("hyper"), 0),
        "hyper-q6.lic": encode_image(ImageData(rgb), session.get("hyper"), 5),
        "hyper-q3.5.lic": encode_image(ImageData(rgb), session.get("hyper"), 2.5),  # format version 4
        "hyper-ctx-q2.lic": encode_image(ImageData(rgb), session.get("hyper-ctx"), 1),
        "hyper-ctx-q5.6-grey.lic": encode_image(ImageData(grey), session.get("hyper-ctx"), 4.6015625),
        "hyper-bb-album.lic": encode_album([("first", ImageData(rgb)), ("second", tagged)], session.get("hyper-bb"),
                                           2, comment="conformance", side_info=b"side\0information",
                                           options=EncodeOptions(posterior_steps=5))[0],
        "gc-c2.lic": encode_image(ImageData(rgb), session.get("gc-c2"), 0),
        "gc-c4-grey.lic": encode_image(ImageData(grey), session.get("gc-c4"), 0),
        "gc-c8.lic": encode_image(ImageData(rgb), session.get("gc-c8"), 0),
        "gc-c4-mse.lic": encode_image(ImageData(rgb), session.get("gc-c4-mse"), 0),
        "gc-c4-sc-preserve.lic": encode_image(ImageData(rgb), session.get("gc-c4-sc"), 0,  # format version 5
                                              EncodeOptions(preserve=keep_box)),
        "cpm-q1-grey.lic": encode_image(ImageData(grey), session.get("cpm"), 0),
        "cpm-q4.lic": encode_image(ImageData(rgb), session.get("cpm"), 3),
        "flow-q2-grey.lic": encode_image(ImageData(grey), session.get("flow"), 1),
        "flow-q12.lic": encode_image(ImageData(rgb), session.get("flow"), 11),
    }
    manifest = json.loads((HERE / "manifest.json").read_text()) if models else {}
    for name in list(manifest):
        if unpack((HERE / name).read_bytes()).model_id in models:
            del manifest[name]
    for name, data in files.items():
        if models and unpack(data).model_id not in models:
            continue
        (HERE / name).write_bytes(data)
        decoded = decode_file(data, session)
        pictures = []
        for index, image in enumerate(decoded.images):
            picture = f"{Path(name).stem}-{index}.png"
            (HERE / picture).write_bytes(encode_image_file(ImageData(image.pixels), ".png"))
            pictures.append(picture)
        manifest[name] = {"symbols_sha256": symbols_sha256(decode_symbols(data, session)), "pixels": pictures}
        print(name, len(data), "bytes")
    (HERE / "manifest.json").write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
