"""Reading .pth files: weights_only always, the official ``args`` namespace allowed, clear errors otherwise."""

import argparse
import pathlib

import pytest
import torch

from mixmim.backbones import create_backbone
from mixmim.weights.checkpoint import load_official_checkpoint
from mixmim.weights.torchfile import CheckpointFileError, load_torch_file


class NotAllowed:
    """A class a checkpoint may not pickle."""


def official_args() -> argparse.Namespace:
    """The kind of namespace the official training script pickles under ``args``."""
    return argparse.Namespace(model="mixmim_tiny_32", batch_size=128, blr=1.5e-4, mask_ratio=0.5, resume="",
                              output_dir=pathlib.Path("/out"), dist_url="env://", layer_decay=None)  # fmt: skip


def test_an_official_file_with_an_args_namespace_loads_through_the_documented_loader(tmp_path):
    model = create_backbone("mixmim_tiny_32", num_classes=0)
    path = tmp_path / "official.pth"
    torch.save({"model": model.state_dict(), "args": official_args(), "epoch": 599}, path)
    fresh = create_backbone("mixmim_tiny_32", num_classes=0)
    load_official_checkpoint(fresh, path)  # weights_only=True: no code from the file runs
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert load_torch_file(path)["args"].output_dir == pathlib.Path("/out")
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # allowed for our loads only


def test_a_file_pickling_other_types_is_refused_with_the_way_out(tmp_path):
    torch.save({"model": {}, "extra": NotAllowed()}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointFileError, match="NotAllowed, which a checkpoint may not hold") as err:
        load_torch_file(tmp_path / "odd.pth")
    assert "Namespace" in str(err.value) and "weights.pth" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"hello world\n" * 10, b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_files_that_are_not_checkpoints_say_so_and_name_the_file(tmp_path, content):
    path = tmp_path / "init.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointFileError, match="init.pth .*is not a readable PyTorch checkpoint") as err:
        load_official_checkpoint(create_backbone("mixmim_tiny_32", num_classes=0), path)
    assert "weights_only=False" not in str(err.value)
