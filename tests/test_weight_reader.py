"""Weight files read without torch (models/weight_reader.py): the same tensors and the same weight id
as torch.load gives, and no code from a crafted file runs."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from models import zoo
from models.weight_files import WEIGHTS_DIR, read_weight_file
from models.weight_reader import UnsafeWeightsError, read_weights, weight_id_of_arrays


def assert_same_payload(path: Path) -> None:
    arrays, tensors = read_weights(path), torch.load(path, weights_only=True)
    assert {k: v for k, v in arrays.items() if k not in ("network", "coding")} == \
        {k: v for k, v in tensors.items() if k not in ("network", "coding")}
    for group in ("network", "coding"):
        assert arrays[group].keys() == tensors[group].keys()
        for name, tensor in tensors[group].items():
            expected = tensor.numpy()
            assert arrays[group][name].dtype == expected.dtype and np.array_equal(arrays[group][name], expected)
    prefixes = zoo.entry(arrays["model"]).encoder_prefixes
    assert weight_id_of_arrays(arrays["network"], arrays["coding"], prefixes) == \
        read_weight_file(path, lambda model: zoo.entry(model).encoder_prefixes).weight_id


def test_a_tiny_weight_file_reads_as_torch_reads_it(tmp_path):
    torch.manual_seed(0)
    path = zoo.export_weights(zoo.build_trainable("cpm", zoo.entry("cpm").tiny_config), "cpm", tmp_path / "w.pt")
    assert_same_payload(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("**/*.pt")), ids=lambda path: path.name)
def test_every_shipped_and_kept_weight_file_reads_without_torch(path):
    assert_same_payload(path)


class Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_file_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"format": "lic-weights", "x": Exploit(marker)}))
    with pytest.raises(UnsafeWeightsError, match="refuses pathlib"):
        read_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(UnsafeWeightsError):
        read_weights(path)
