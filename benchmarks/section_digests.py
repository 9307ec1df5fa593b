"""SHA-256 of every coded section that each shipped model writes for a few images at each of its
operating points: run it before and after a change that must not alter the bytes, then compare
the two JSON files (`--compare OLD NEW`). The header is listed separately, since a change of the
weight-id scheme changes it alone.

    python benchmarks/section_digests.py --images ../shared/data/kodak --count 3 --out before.json
    python benchmarks/section_digests.py --compare before.json after.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def digests(image_folder: Path, count: int, threads: int) -> dict:
    import torch

    from bitstream.container import unpack
    from lic_cli.codec import CodecSession, encode_image
    from lic_cli.imageio import list_images, read_image
    from models import zoo

    torch.set_num_threads(threads)
    session = CodecSession(compute="fp32")
    images = list_images(image_folder)[:count]
    result: dict = {}
    for name in sorted(zoo.ZOO):
        if not zoo.entry(name).shipped:
            continue
        loaded = session.get(name)
        for path in images:
            image = read_image(path.read_bytes())
            for quality in range(loaded.codec.qualities.count):
                container = unpack(encode_image(image, loaded, quality))
                key = f"{name} {path.name} q{quality + 1}"
                result[key] = {
                    "weight_id": container.weights_id.hex(),
                    "sections": {int(kind): hashlib.sha256(payload).hexdigest()
                                 for kind, payload in sorted(container.sections.items())},
                }
                print(key, flush=True)
    return result


def compare(old: dict, new: dict) -> int:
    differing = [key for key in old if key not in new or old[key]["sections"] != new[key]["sections"]]
    ids = sorted({(key.split()[0], old[key]["weight_id"], new[key]["weight_id"]) for key in old if key in new})
    for model, before, after in ids:
        print(f"{model}: weight id {before} -> {after}" if before != after else f"{model}: weight id {before}")
    print(f"{len(old) - len(differing)} of {len(old)} encodings have the same sections"
          + (f"; differing: {', '.join(differing)}" if differing else ""))
    return 1 if differing else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    args = parser.parse_args()
    if args.compare:
        old, new = (json.loads(path.read_text()) for path in args.compare)
        sys.exit(compare(old, new))
    result = digests(args.images, args.count, args.threads)
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
