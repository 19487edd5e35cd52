"""ImageFolder datasets: corrupt images skipped and counted (or failing), clear errors for bad paths."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mixmim.config import DataConfig
from mixmim.data import (
    CorruptImageError,
    DatasetLayoutError,
    ImageFolderDataset,
    build_dataset,
    eval_transform,
    unpack_batch,
)


def make_folder(root, per_class: int = 4, corrupt: bool = True):
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            for i in range(per_class):
                path = root / split / c / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (20, 16), (40 * i, 10, 200)).save(path)
    if corrupt:
        (root / "train" / "cat" / "2.png").write_bytes(b"garbage, not a png")
        good = root / "train" / "dog" / "1.png"
        good.write_bytes(good.read_bytes()[:40])  # truncated
    return root


def test_corrupt_images_are_replaced_flagged_and_warned(tmp_path, caplog):
    dataset = ImageFolderDataset(make_folder(tmp_path), "train", eval_transform(16))
    with caplog.at_level(logging.WARNING, logger="mixmim.data.folder"):
        samples = [dataset[i] for i in range(len(dataset))]
        samples += [dataset[i] for i in range(len(dataset))]  # a second epoch
    assert all(s[0].shape == (3, 16, 16) for s in samples)
    assert sum(s[2] for s in samples) == 4  # two bad files, twice
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and any("2.png" in w for w in warned) and any("1.png" in w for w in warned)
    assert dataset.classes == ["cat", "dog"]


def test_corrupt_images_do_not_crash_a_worker(tmp_path):
    dataset = ImageFolderDataset(make_folder(tmp_path), "train", eval_transform(16))
    loader = DataLoader(dataset, batch_size=4, num_workers=1)
    counts = [unpack_batch(batch)[2] for batch in loader]
    assert sum(counts) == 2


def test_fail_mode_raises_naming_the_file(tmp_path):
    dataset = build_dataset(DataConfig(dataset="folder", root=str(make_folder(tmp_path)), on_corrupt="fail"), "train")
    bad = next(i for i, (path, _) in enumerate(dataset.samples) if path.endswith("cat/2.png"))
    with pytest.raises(CorruptImageError, match=r"cat/2\.png.*on_corrupt=skip"):
        dataset[bad]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist or is not a folder"),
        (lambda root: root.mkdir(), "train' does not exist"),
        (lambda root: (root / "train").mkdir(parents=True), "has no class folders"),
        (lambda root: (root / "train" / "cat").mkdir(parents=True), "Found no valid file"),
    ],
)
def test_missing_or_empty_root_fails_with_path_and_layout(tmp_path, make, message):
    root = tmp_path / "imagenet"
    make(root)
    with pytest.raises(DatasetLayoutError, match=message) as info:
        build_dataset(DataConfig(dataset="folder", root=str(root)), "train")
    assert str(root) in str(info.value) and "<class>/<image>" in str(info.value)


def test_empty_root_setting_and_bad_values_are_rejected(tmp_path):
    with pytest.raises(DatasetLayoutError, match="data.root is empty"):
        build_dataset(DataConfig(dataset="folder"), "train")
    with pytest.raises(ValueError, match="on_corrupt"):
        build_dataset(DataConfig(dataset="folder", root=str(make_folder(tmp_path)), on_corrupt="ignore"), "train")
    with pytest.raises(ValueError, match="digits"):
        build_dataset(DataConfig(dataset="imagenet"), "train")
    with pytest.raises(ValueError, match="split"):
        build_dataset(DataConfig(), "test")


def test_fingerprint_tracks_the_file_list(tmp_path):
    root = make_folder(tmp_path, corrupt=False)
    first = ImageFolderDataset(root, "train").fingerprint()
    assert ImageFolderDataset(root, "train").fingerprint() == first
    assert ImageFolderDataset(root, "val").fingerprint() != first  # the split is part of the paths
    (root / "train" / "cat" / "0.png").write_bytes(b"x" * 10)  # same name, new size
    assert ImageFolderDataset(root, "train").fingerprint() != first


def test_subset_is_fixed(tmp_path):
    root = make_folder(tmp_path, per_class=10, corrupt=False)
    a = ImageFolderDataset(root, "train", max_images=5)
    b = build_dataset(DataConfig(dataset="folder", root=str(root), max_train_images=5), "train")
    assert len(a) == 5 and a.samples == b.samples
    assert isinstance(a[0][0], Image.Image) and torch.is_tensor(torch.as_tensor(a[0][1]))


def test_class_subset_keeps_only_listed_folders(tmp_path):
    from mixmim.data.subsets import subset_classes

    root = make_folder(tmp_path / "data", per_class=2, corrupt=False)
    (root / "train" / "bird").mkdir()
    Image.new("RGB", (20, 16)).save(root / "train" / "bird" / "0.png")
    ds = ImageFolderDataset(root, "train", classes=["dog", "bird"])
    assert ds.classes == ["bird", "dog"] and len(ds) == 3 and sorted(set(ds.targets)) == [0, 1]
    with pytest.raises(DatasetLayoutError, match="1 of the 2 classes of data.subset"):
        ImageFolderDataset(root, "val", classes=["dog", "bird"])  # val has no bird folder
    in100 = subset_classes("imagenet100")
    assert len(in100) == len(set(in100)) == 100 and in100[0] == "n02869837" and in100[-1] == "n02090622"
    with pytest.raises(DatasetLayoutError, match="classes of data.subset"):  # the built dataset uses the list
        build_dataset(DataConfig(dataset="folder", root=str(root), subset="imagenet100"), "train")


def test_counts_are_the_classes_and_the_images_read(tmp_path):
    """What the stages record for the report's dataset check (classes through a Subset; images after max_images)."""
    from torch.utils.data import Subset

    from mixmim.data import dataset_counts

    root = make_folder(tmp_path, per_class=10, corrupt=False)
    assert dataset_counts(ImageFolderDataset(root, "train")) == (2, 20)
    assert dataset_counts(ImageFolderDataset(root, "train", max_images=5)) == (2, 5)
    assert dataset_counts(Subset(ImageFolderDataset(root, "train"), [0, 1, 2])) == (2, 3)
    assert dataset_counts(list(range(4))) == (None, 4)  # no classes: not counted
