"""Tests for robust_contrastive.data (no network and no shared data needed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from torchvision.io import ImageReadMode, decode_image, encode_jpeg, write_file, write_png

from robust_contrastive.data import (
    HELD_OUT_PATH,
    SAMPLE_PATH,
    SAMPLE_SPLIT_OVERLAP,
    ImageDataset,
    first_per_class,
    load_cifar,
    load_dataset,
    load_image_folder,
    load_sample,
    sample_indices,
    train_val_split,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The splits of the CIFAR-10 reproduction that trained the bundled pretrained models: indices
# into the sorted cifar10-train ImageFolder listing (index i = class i // 5000, file i % 5000).
SPLIT_FILE = REPO_ROOT / "experiments" / "results" / "cifar10_cpu_split.json"

# torchvision >= 0.29 deprecates torchvision.io (used here to write the test images).
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning"
)


def _random_image(generator: torch.Generator, height: int = 8, width: int = 8) -> torch.Tensor:
    """Returns a random (3, height, width) uint8 image."""
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def _make_folder(root: Path, counts: dict[str, int], *, size: int = 8, seed: int = 0) -> Path:
    """Writes PNG images root/<class>/<i>.png and returns root."""
    generator = torch.Generator().manual_seed(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            write_png(_random_image(generator, size, size), str(root / name / f"{index:03d}.png"))
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An ImageFolder with classes created out of alphabetical order."""
    return _make_folder(tmp_path / "data", {"zebra": 3, "ant": 2, "moth": 4})


def test_load_image_folder_labels_shapes_dtype(folder: Path) -> None:
    dataset = load_image_folder(folder)
    assert dataset.classes == ("ant", "moth", "zebra")
    assert len(dataset) == 9
    assert dataset.images.shape == (9, 3, 8, 8)
    assert dataset.images.dtype == torch.uint8
    assert dataset.images.is_contiguous()
    assert dataset.labels.dtype == torch.int64
    assert dataset.labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    expected = decode_image(
        torch.frombuffer(bytearray((folder / "moth" / "002.png").read_bytes()), dtype=torch.uint8),
        mode=ImageReadMode.RGB,
    )
    assert torch.equal(dataset.images[4], expected)


def test_load_image_folder_jpeg_grayscale_and_ignored_files(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    (tmp_path / "cat").mkdir()
    write_file(str(tmp_path / "cat" / "a.JPG"), encode_jpeg(_random_image(generator)))
    gray = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8, generator=generator)
    write_png(gray, str(tmp_path / "cat" / "b.png"))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "readme.md").write_text("a file next to the class folders")
    dataset = load_image_folder(tmp_path)
    assert dataset.classes == ("cat",)
    assert dataset.images.shape == (2, 3, 8, 8)
    assert torch.equal(dataset.images[1], gray.expand(3, -1, -1))


def test_max_per_class_takes_first_files(folder: Path) -> None:
    full = load_image_folder(folder)
    limited = load_image_folder(folder, max_per_class=2)
    assert limited.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(limited.images[2:4], full.images[2:4])
    assert torch.equal(limited.images[4:6], full.images[6:8])


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(2)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_png(_random_image(generator, 8, 8), str(tmp_path / "a" / "0.png"))
    write_png(_random_image(generator, 12, 6), str(tmp_path / "b" / "0.png"))
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(tmp_path)
    dataset = load_image_folder(tmp_path, image_size=5)
    assert dataset.images.shape == (2, 3, 5, 5)
    assert dataset.images.dtype == torch.uint8


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")


def test_empty_folder_and_empty_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="contains no images"):
        load_image_folder(tmp_path)


def test_corrupt_file_is_skipped_with_warning(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "ant" / "001.png").write_bytes(b"this is not a png")
    with caplog.at_level(logging.WARNING, logger="robust_contrastive.data"):
        dataset = load_image_folder(folder)
    assert len(dataset) == 8
    assert dataset.labels.tolist() == [0, 1, 1, 1, 1, 2, 2, 2]
    assert "001.png" in caplog.text
    assert "Skipped 1 of 9" in caplog.text


@pytest.mark.parametrize("kind", ["png", "jpg"])
def test_a_decompression_bomb_is_skipped_before_decoding(
    folder: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """A header declaring 100,000 x 100,000 pixels is refused from the header alone."""
    side = (100_000).to_bytes(4, "big")
    if kind == "png":
        header = (
            b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + side + side + b"\x08\x02\x00\x00\x00"
        )
    else:  # SOI, an APP0 segment, then SOF0 with height and width (16 bits: 60,000 each)
        side16 = (60_000).to_bytes(2, "big")
        header = b"\xff\xd8" + b"\xff\xe0\x00\x04ab" + b"\xff\xc0\x00\x11\x08" + side16 + side16
    (folder / "ant" / f"bomb.{kind}").write_bytes(header + b"\x00" * 64)
    with caplog.at_level(logging.WARNING, logger="robust_contrastive.data"):
        dataset = load_image_folder(folder)
    assert len(dataset) == 9
    assert "MAX_IMAGE_PIXELS" in caplog.text
    assert f"bomb.{kind}" in caplog.text


def test_all_corrupt_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.jpg").write_bytes(b"garbage")
    (tmp_path / "a" / "1.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="could be decoded"):
        load_image_folder(tmp_path)


def test_load_sample() -> None:
    assert SAMPLE_PATH.is_file()
    assert SAMPLE_PATH.stat().st_size < 6 * 1024 * 1024
    dataset = load_sample()
    assert len(dataset) == 5000
    assert dataset.classes == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    assert dataset.images.shape == (5000, 3, 32, 32)
    assert dataset.images.dtype == torch.uint8
    assert torch.bincount(dataset.labels).tolist() == [500] * 10
    assert dataset.images.float().std() > 10  # real images, not a constant


def test_load_held_out_sample() -> None:
    assert HELD_OUT_PATH.is_file()
    assert HELD_OUT_PATH.stat().st_size < 2.5 * 1024 * 1024
    dataset = load_sample(held_out=True)
    assert len(dataset) == 2000
    assert dataset.classes == load_sample().classes
    assert dataset.images.shape == (2000, 3, 32, 32)
    assert dataset.images.dtype == torch.uint8
    assert torch.bincount(dataset.labels).tolist() == [200] * 10
    assert bool((dataset.labels.diff() >= 0).all())  # ordered by class
    assert dataset.images.float().std() > 10  # real images, not a constant


def test_held_out_sample_is_the_evaluation_split_of_the_bundled_models() -> None:
    split = json.loads(SPLIT_FILE.read_text())
    held_out = sample_indices(held_out=True)
    assert held_out.tolist() == sorted(split["val"])  # exactly the 2,000 evaluation images
    trained_or_selected = set(split["encoder_train"]) | set(split["select"])
    assert trained_or_selected.isdisjoint(held_out.tolist())
    # ordered by class, then file name; the label is the class folder of the index
    assert bool((held_out.diff() > 0).all())
    assert torch.equal(load_sample(held_out=True).labels, held_out // 5000)


def test_held_out_sample_records_its_files() -> None:
    from safetensors import safe_open

    with safe_open(str(HELD_OUT_PATH), framework="pt") as handle:
        metadata = handle.metadata()
    classes = metadata["classes"].split(",")
    files = metadata["files"].split(",")
    indices = sample_indices(held_out=True).tolist()
    assert files == [f"{classes[i // 5000]}/{i % 5000:04d}.jpg" for i in indices]
    assert metadata["split_file"] == "experiments/results/cifar10_cpu_split.json"
    assert metadata["split_part"] == "val"
    assert metadata["per_class"] == "200"


def test_sample_indices_of_the_sample() -> None:
    indices = sample_indices()
    assert indices.shape == (5000,)
    assert torch.equal(load_sample().labels, indices // 5000)
    assert int((indices % 5000).max()) == 499  # files 0000-0499 of each class


def test_the_two_samples_agree_on_the_images_they_share() -> None:
    sample, held_out = load_sample(), load_sample(held_out=True)
    shared = torch.isin(sample_indices(), sample_indices(held_out=True))
    shared_held = torch.isin(sample_indices(held_out=True), sample_indices())
    assert int(shared.sum()) == int(shared_held.sum()) == SAMPLE_SPLIT_OVERLAP["sample"]["held_out"]
    # the same JPEG bytes, decoded the same way
    assert torch.equal(sample.images[shared], held_out.images[shared_held])


def test_sample_split_overlap_figures() -> None:
    split = json.loads(SPLIT_FILE.read_text())
    evaluation, select = set(split["val"]), set(split["select"])
    probe_train = set(range(50000)) - evaluation - select  # the probes' pool
    assert set(split["encoder_train"]) <= probe_train
    for spec, held in (("sample", False), ("sample-held-out", True)):
        indices = set(sample_indices(held_out=held).tolist())
        assert SAMPLE_SPLIT_OVERLAP[spec] == {
            "images": len(indices),
            "encoder_train": len(indices & set(split["encoder_train"])),
            "probe_train": len(indices & probe_train),
            "select": len(indices & select),
            "held_out": len(indices & evaluation),
        }
    assert SAMPLE_SPLIT_OVERLAP["sample"]["encoder_train"] == 4722


def test_load_dataset_sample_held_out() -> None:
    dataset = load_dataset("Sample-Held-Out", max_per_class=3)
    held_out = load_sample(held_out=True)
    assert torch.bincount(dataset.labels).tolist() == [3] * 10
    assert torch.equal(dataset.images, held_out.images[first_per_class(held_out.labels, 3)])


def test_build_sample_from_split_indices(tmp_path: Path) -> None:
    from safetensors import safe_open

    from tools import build_sample

    generator = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        (tmp_path / "src" / name).mkdir(parents=True)
        for k in range(4):
            jpeg = encode_jpeg(_random_image(generator))
            write_file(str(tmp_path / "src" / name / f"{k:04d}.jpg"), jpeg)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"val": [6, 1, 5, 2], "train": [0, 3, 4, 7]}))
    outs = [tmp_path / "one.safetensors", tmp_path / "two.safetensors"]
    for out in outs:
        build_sample.main(
            [
                "--source",
                str(tmp_path / "src"),
                "--indices-from",
                str(split),
                "--part",
                "val",
                "--out",
                str(out),
            ]
        )
    assert outs[0].read_bytes() == outs[1].read_bytes()  # rebuilds are byte-identical
    with safe_open(str(outs[0]), framework="pt") as handle:
        metadata = handle.metadata()
        labels = handle.get_tensor("labels")
        jpeg_bytes, offsets = handle.get_tensor("jpeg_bytes"), handle.get_tensor("offsets")
    assert metadata["indices"] == "1,2,5,6"
    assert metadata["files"] == "a/0001.jpg,a/0002.jpg,b/0001.jpg,b/0002.jpg"
    assert metadata["per_class"] == "2"
    assert labels.tolist() == [0, 0, 1, 1]
    third = jpeg_bytes[int(offsets[2]) : int(offsets[3])].numpy().tobytes()
    assert third == (tmp_path / "src" / "b" / "0001.jpg").read_bytes()  # bytes unchanged
    with pytest.raises(ValueError, match="--part one of"):
        build_sample.build(tmp_path / "src", 1, outs[0], split_file=split, part="test")


def test_load_dataset_sample_with_options() -> None:
    dataset = load_dataset("sample", max_per_class=3, image_size=16)
    assert dataset.images.shape == (30, 3, 16, 16)
    assert torch.bincount(dataset.labels).tolist() == [3] * 10


def test_load_dataset_folder_and_errors(folder: Path) -> None:
    assert len(load_dataset(folder)) == 9
    assert len(load_dataset(str(folder), max_per_class=1)) == 3
    with pytest.raises(ValueError, match="root="):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match="'sample'"):
        load_dataset("nonexistent-xyz")


def test_load_cifar_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", root=tmp_path)


def test_train_val_split_properties() -> None:
    labels = torch.tensor([0] * 10 + [1] * 6 + [2] * 4).roll(5)
    train, val = train_val_split(labels, val_per_class=2, seed=3)
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(train, train.sort().values)
    assert torch.equal(val, val.sort().values)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(20))
    assert torch.bincount(labels[val], minlength=3).tolist() == [2, 2, 2]

    again_train, again_val = train_val_split(labels, val_per_class=2, seed=3)
    assert torch.equal(train, again_train)
    assert torch.equal(val, again_val)
    other = [train_val_split(labels, val_per_class=2, seed=s)[1] for s in range(4, 8)]
    assert any(not torch.equal(val, v) for v in other)

    _, val_fraction = train_val_split(labels, val_fraction=0.5, seed=0)
    assert torch.bincount(labels[val_fraction], minlength=3).tolist() == [5, 3, 2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"val_per_class": 1, "val_fraction": 0.1}, "exactly one"),
        ({"val_per_class": 4}, "val_per_class"),
        ({"val_per_class": 0}, "positive"),
        ({"val_fraction": 0.0}, r"\(0, 1\)"),
        ({"val_fraction": 1.0}, r"\(0, 1\)"),
    ],
)
def test_train_val_split_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match=match):
        train_val_split(labels, **kwargs)  # type: ignore[arg-type]


def test_train_val_split_bad_labels() -> None:
    with pytest.raises(ValueError, match="integers"):
        train_val_split(torch.zeros(4), val_per_class=1)
    with pytest.raises(ValueError, match="1-D"):
        train_val_split(torch.zeros(2, 2, dtype=torch.int64), val_per_class=1)


def test_image_dataset_validation() -> None:
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(images.float(), labels, ("a", "b"))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ImageDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), labels, ("a", "b"))
    with pytest.raises(ValueError, match="same length"):
        ImageDataset(images, labels[:3], ("a", "b"))
    with pytest.raises(ValueError, match="int64"):
        ImageDataset(images, labels.int(), ("a", "b"))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ImageDataset(images, labels, ("a",))
    channels_last = torch.zeros(4, 2, 2, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
    assert ImageDataset(channels_last, labels, ("a", "b")).images.is_contiguous()


def test_subset() -> None:
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 3, 2, 2).contiguous()
    dataset = ImageDataset(images, torch.tensor([0, 1, 0, 1, 1]), ("a", "b"))
    part = dataset.subset([4, 0])
    assert len(part) == 2
    assert part.images[:, 0, 0, 0].tolist() == [4, 0]
    assert part.labels.tolist() == [1, 0]
    assert part.classes == dataset.classes
    masked = dataset.subset(dataset.labels == 1)
    assert masked.images[:, 0, 0, 0].tolist() == [1, 3, 4]
    assert len(dataset.subset(torch.tensor([], dtype=torch.int64))) == 0
    with pytest.raises(ValueError, match="lie in"):
        dataset.subset([5])


def test_first_per_class_keeps_the_first_images_of_each_class_in_order() -> None:
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 0, 1])
    positions = first_per_class(labels, 2)
    assert positions.tolist() == [0, 1, 2, 3, 4, 7]  # class 0: 1, 4; class 1: 3, 7; class 2: 0, 2
    assert positions.dtype == torch.int64
    assert first_per_class(labels, 10).tolist() == list(range(8))  # a small class keeps all
    with pytest.raises(ValueError, match="per_class must be a positive integer"):
        first_per_class(labels, 0)
    with pytest.raises(ValueError, match="labels must be integers"):
        first_per_class(labels.float(), 1)


def test_stratified_keeps_per_class_images_of_every_class_seeded() -> None:
    labels = torch.arange(3).repeat_interleave(torch.tensor([5, 4, 2]))  # 5, 4 and 2 images
    data = ImageDataset(
        images=torch.arange(11, dtype=torch.uint8).view(11, 1, 1, 1).expand(11, 3, 2, 2),
        labels=labels,
        classes=("a", "b", "c"),
    )
    subset = data.stratified(3, seed=1)
    assert subset.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]  # class c has only 2
    picked = subset.images[:, 0, 0, 0].long()
    assert picked.tolist() == sorted(picked.tolist())  # in index order
    assert torch.equal(data.labels[picked], subset.labels)
    assert torch.equal(data.stratified(3, seed=1).images, subset.images)
    assert not torch.equal(
        torch.stack([data.stratified(3, seed=s).images for s in range(8)]),
        subset.images.expand(8, -1, -1, -1, -1),
    )  # another seed draws other images
    with pytest.raises(ValueError, match="per_class"):
        data.stratified(0)
