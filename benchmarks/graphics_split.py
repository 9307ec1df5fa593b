"""Split ../shared/data/train-graphics into training and held-out folders (symbolic links).

Whole source packages are held out, so that no held-out illustration has a sibling (same
artist, same manual, same theme) in training: grisbi-common (14 screenshots of a French finance
application), frozen-bubble-data (8 cartoon game backgrounds) and xfdesktop4-data (4 wallpapers).

    python benchmarks/graphics_split.py --out runs/graphics-split
    # -> runs/graphics-split/train (152 images), runs/graphics-split/heldout (26 images)
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELD_OUT_PACKAGES = ("grisbi-common", "frozen-bubble-data", "xfdesktop4-data")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def package_of(path: Path) -> str:
    return path.name.split("_", 1)[0]


def split(source: Path) -> tuple[list[Path], list[Path]]:
    images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    held_out = [p for p in images if package_of(p) in HELD_OUT_PACKAGES]
    return [p for p in images if p not in held_out], held_out


def link_all(paths: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("../shared/data/train-graphics"))
    parser.add_argument("--out", type=Path, default=Path("runs/graphics-split"))
    args = parser.parse_args()
    train, held_out = split(args.source)
    link_all(train, args.out / "train")
    link_all(held_out, args.out / "heldout")
    print(f"{len(train)} training and {len(held_out)} held-out images under {args.out}")


if __name__ == "__main__":
    main()
