"""Checks of what a file declares, made from its header alone: before torch loads or a model runs."""
from __future__ import annotations

from bitstream import album
from bitstream.container import MAX_PIXELS, Container, FormatError, SectionType


def declared_sizes(container: Container) -> list[tuple[int, int]]:
    """(width, height) of every image a file declares: its header's, and an album's entries (whose
    table parse also refuses more BBVI steps than an encoder writes)."""
    sizes = [(container.width, container.height)]
    if SectionType.ALBUM in container.sections and SectionType.BITSBACK in container.sections:
        table = album.unpack_table(container.sections[SectionType.ALBUM], len(container.sections[SectionType.BITSBACK]))
        sizes += [(entry.width, entry.height) for entry in table.entries]
    return sizes


def check_declared_size(container: Container, max_pixels: int, whose: str | None = None) -> None:
    """Refuse a declared image over max_pixels: the --max-pixels limit, or a model's (whose)."""
    for width, height in declared_sizes(container):
        if width * height > max_pixels:
            limit = (f"the {max_pixels} pixels {whose}" if whose else
                     f"the limit of {max_pixels} (raise it with --max-pixels, at most {MAX_PIXELS})")
            raise FormatError(f"declares an image of {width}x{height} = {width * height} pixels, over {limit}")
