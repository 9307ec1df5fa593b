"""The examples users read are examples that run: every ```sh and ```python block of the README
and of docs/ (a plain ``` block is shown, not run) and the examples in the module docstrings of the
Python API, each in a folder holding the files they name (photo.png, a.png, b.png, mask.png;
photo.lic for the API's), with the shipped models on small images."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lic_cli

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
API_MODULES = [ROOT / "lic_cli" / "__init__.py", ROOT / "lic_cli" / "api.py", ROOT / "lic_cli" / "pil_plugin.py"]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.slow


def fenced_blocks(language: str) -> list[tuple[str, str]]:
    """(where, code) of every block fenced with this language in the README and docs/."""
    return [(f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}", match.group(2))
            for path in DOCUMENTS for text in [path.read_text()] for match in FENCE.finditer(text)
            if match.group(1) == language]


def docstring_examples(path: Path) -> str:
    """The indented example lines of a module's docstring, dedented, as one program."""
    docstring = re.match(r'"""(.*?)"""', path.read_text(), re.DOTALL).group(1)
    lines = [line[4:] for line in docstring.splitlines() if line.startswith("    ")]
    return "\n".join(lines)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    photo = np.asarray(Image.open(ROOT / "assets" / "kodim23.png").convert("RGB"))
    Image.fromarray(photo[128:256, 256:448]).save(tmp_path / "photo.png")
    Image.fromarray(photo[256:320, 128:224]).save(tmp_path / "a.png")
    Image.fromarray(photo[320:384, 128:224]).save(tmp_path / "b.png")
    mask = np.zeros((128, 192), dtype=np.uint8)
    mask[32:96, 48:144] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_documents_have_examples_to_run():
    assert fenced_blocks("sh") and fenced_blocks("python")


@pytest.mark.parametrize("where, code", fenced_blocks("sh"), ids=[where for where, _ in fenced_blocks("sh")])
def test_shell_examples_run(workdir, where, code):
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=workdir, env=environment,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{where}: {result.stderr[-2000:]}"


@pytest.mark.parametrize("where, code", fenced_blocks("python"), ids=[where for where, _ in fenced_blocks("python")])
def test_python_examples_run(workdir, where, code):
    exec(compile(code, where, "exec"), {"__name__": "__example__"})  # noqa: S102 - the README's own code


@pytest.mark.parametrize("module", API_MODULES, ids=lambda path: path.name)
def test_api_docstring_examples_run(workdir, module):
    (workdir / "photo.lic").write_bytes(lic_cli.encode(workdir / "photo.png"))
    code = docstring_examples(module)
    assert code.strip()
    exec(compile(code, str(module.relative_to(ROOT)), "exec"), {"__name__": "__example__"})  # noqa: S102
