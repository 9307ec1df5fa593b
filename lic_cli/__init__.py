"""lic: learned image compression. The command line is `lic` (lic_cli.cli); from Python:

    import lic_cli
    data = lic_cli.encode("photo.png", quality=4)   # PIL image, uint8 array, image bytes or path -> .lic bytes
    picture = lic_cli.decode(data)                  # -> PIL.Image.Image
    lic_cli.info(data)                              # header fields, as `lic info --json`
    lic_cli.register_lic_opener()                   # Pillow's Image.open / Image.save learn .lic

(lic_cli/api.py and lic_cli/pil_plugin.py.) Attributes load on first use, so that the command
line starts without them.
"""
from __future__ import annotations

_API = {"encode": "api", "decode": "api", "decode_all": "api", "info": "api", "register_lic_opener": "pil_plugin"}
__all__ = ["decode", "decode_all", "encode", "info", "register_lic_opener"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'lic_cli' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_API[name]}"), name)
