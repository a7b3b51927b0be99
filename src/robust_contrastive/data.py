"""In-memory labelled image data sets: loading, the bundled samples and stratified splits.

Every loader returns an [`ImageDataset`][robust_contrastive.ImageDataset], from an ImageFolder
directory, CIFAR-10/100 or the two CIFAR-10 samples shipped inside the package.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as tvf
from tqdm.auto import tqdm

from ._names import SAMPLE_SPLIT_OVERLAP as SAMPLE_SPLIT_OVERLAP
from .validation import check_positive_int

__all__ = [
    "HELD_OUT_PATH",
    "SAMPLE_PATH",
    "SAMPLE_SPLIT_OVERLAP",
    "ImageDataset",
    "first_per_class",
    "load_cifar",
    "load_dataset",
    "load_image_folder",
    "load_sample",
    "sample_indices",
    "train_val_split",
]

logger = logging.getLogger(__name__)

SAMPLE_PATH: Path = Path(__file__).resolve().parent / "assets" / "cifar10_sample.safetensors"
"""The bundled CIFAR-10 sample (500 JPEGs per class): most of it trained the bundled models."""

HELD_OUT_PATH: Path = Path(__file__).resolve().parent / "assets" / "cifar10_heldout.safetensors"
"""The bundled held-out CIFAR-10 sample (2000 JPEGs, 200 per class) the bundled models never saw."""

_IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
_PROGRESS_THRESHOLD = 2000
_MAX_CORRUPT_WARNINGS = 10
_SAMPLE_FORMAT_VERSION = "1"
_CIFAR10_TRAIN_PER_CLASS = 5000
_ACCEPTED_SPECS = (
    "an ImageFolder path (root/<class>/<image>), 'cifar10', 'cifar100', 'sample' or "
    "'sample-held-out'"
)
_CifarName = Literal["cifar10", "cifar100"]
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_TORCHVISION_IO_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"


@contextlib.contextmanager
def _quiet_torchvision_io() -> Iterator[None]:
    """Silences torchvision's (>= 0.29) deprecation warning, raised on every decode call."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_TORCHVISION_IO_DEPRECATION, category=DeprecationWarning
        )
        yield


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """An in-memory labelled image set.

    The fields are validated on construction; a non-contiguous ``images`` tensor is made
    contiguous and ``classes`` is stored as a tuple.

    Attributes:
        images: (N, 3, H, W) uint8 RGB images with values in [0, 255], contiguous.
        labels: (N,) int64 class indices in [0, len(classes)).
        classes: Class names; ``classes[k]`` is the name of label ``k``.

    Raises:
        TypeError: If ``images`` or ``labels`` is not a ``torch.Tensor`` or a class name is
            not a string.
        ValueError: If a dtype, rank, channel count or length does not match, or a label is
            out of range.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        for name, value in (("images", images), ("labels", labels)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if images.dtype != torch.uint8:
            raise ValueError(
                f"images must be uint8 with values in [0, 255], got dtype {images.dtype}; "
                "convert float images in [0, 1] with (images * 255).round().to(torch.uint8)"
            )
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must have shape (N, 3, H, W) (RGB, channels first), got "
                f"{tuple(images.shape)}; permute channels-last arrays with "
                "images.permute(0, 3, 1, 2) and expand grayscale with images.expand(-1, 3, -1, -1)"
            )
        if labels.dtype != torch.int64 or labels.ndim != 1:
            raise ValueError(
                f"labels must be a 1-D int64 tensor, got dtype {labels.dtype} and shape "
                f"{tuple(labels.shape)}; convert with labels.reshape(-1).long()"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images and labels must have the same length, got {images.shape[0]} images "
                f"and {labels.shape[0]} labels"
            )
        if isinstance(self.classes, str):
            raise TypeError(
                f"classes must be a sequence of class names, got the string {self.classes!r}: "
                "pass a tuple such as ('cat', 'dog')"
            )
        classes = tuple(self.classes)
        for name in classes:
            if not isinstance(name, str):
                raise TypeError(f"class names must be strings, got {type(name).__name__}")
        if labels.numel() > 0:
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= len(classes):
                raise ValueError(
                    f"labels must lie in [0, {len(classes)}) for {len(classes)} classes, got "
                    f"values in [{low}, {high}]; pass one class name per label value"
                )
        if not images.is_contiguous():
            object.__setattr__(self, "images", images.contiguous())
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:  # a summary, without the tensor contents
        shape = tuple(self.images.shape[1:])
        return f"ImageDataset(n={len(self)}, image_shape={shape}, classes={len(self.classes)})"

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        """Returns the images and labels at ``indices`` (copied, in the given order).

        Args:
            indices: (K,) integer indices in [-N, N) (int64 tensor or sequence of ints), or an
                (N,) bool mask.

        Returns:
            An ImageDataset of K images with the same ``classes``.

        Raises:
            TypeError: If ``indices`` is neither integer nor boolean.
            ValueError: If ``indices`` is not 1-D or an index is out of range.
        """
        index = torch.as_tensor(indices)
        if index.numel() == 0:
            index = index.to(torch.int64)
        if index.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(index.shape)}")
        if index.dtype == torch.bool:
            if index.shape[0] != len(self):
                raise ValueError(
                    f"a boolean mask must have one entry per image ({len(self)}), "
                    f"got {index.shape[0]}"
                )
            index = index.nonzero().flatten()
        elif index.dtype.is_floating_point or index.dtype.is_complex:
            raise TypeError(f"indices must be integers or a bool mask, got dtype {index.dtype}")
        index = index.to(device=self.labels.device, dtype=torch.int64)
        n = len(self)
        if index.numel() > 0 and (int(index.min()) < -n or int(index.max()) >= n):
            raise ValueError(
                f"indices must lie in [-{n}, {n}) for a data set of {n} images, got values in "
                f"[{int(index.min())}, {int(index.max())}]"
            )
        return replace(self, images=self.images[index].contiguous(), labels=self.labels[index])

    def stratified(self, per_class: int, *, seed: int = 0) -> ImageDataset:
        """A seeded random subset with ``per_class`` images of every class, in index order.

        Use it to evaluate on a balanced part of a class-sorted set: the first N images of
        such a set hold a single class, which
        [`evaluate_robustness`][robust_contrastive.evaluate_robustness] flags.

        Args:
            per_class: images to keep of each class (all of a class that has fewer).
            seed: seeds the draw (one ``torch.Generator``, classes in label order).

        Returns:
            An ImageDataset of at most ``per_class * len(classes)`` images, sorted by index.

        Raises:
            ValueError: If ``per_class`` is not a positive integer.
            TypeError: If ``seed`` is not an integer.
        """
        check_positive_int("per_class", per_class)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        generator = torch.Generator().manual_seed(seed)
        keep = []
        for label in range(len(self.classes)):
            members = (self.labels == label).nonzero().flatten()
            order = torch.randperm(len(members), generator=generator)
            keep.append(members[order[:per_class]])
        return self.subset(torch.cat(keep).sort().values)


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def _resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 3, S, S) uint8, antialiased bilinear (the input if already S x S)."""
    if images.shape[-2:] == (image_size, image_size):
        return images
    resized: torch.Tensor = tvf.resize(images, [image_size, image_size], antialias=True)
    return resized.contiguous()


def _list_class_files(root: Path, max_per_class: int | None) -> tuple[list[str], list[list[str]]]:
    """The sorted class folders of an ImageFolder and, per class, its image paths sorted by
    their path relative to the class folder (the first ``max_per_class`` if given)."""
    layout = "expected root/<class>/<image> with .jpg, .jpeg or .png images"
    class_names = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not class_names:
        raise ValueError(f"{root} contains no class folders; {layout} (one sub-folder per class)")
    files_per_class: list[list[str]] = []
    for name in class_names:
        class_dir = os.path.join(root, name)
        found: list[tuple[str, str]] = []
        visited = {os.path.realpath(class_dir)}
        for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".") and _first_visit(os.path.join(dirpath, d), visited)
            ]
            relative = os.path.relpath(dirpath, class_dir)
            prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            for filename in filenames:
                extension = os.path.splitext(filename)[1].lower()
                if extension in _IMAGE_EXTENSIONS and not filename.startswith("."):
                    found.append((prefix + filename, os.path.join(dirpath, filename)))
        if not found:
            raise ValueError(
                f"class folder {class_dir} contains no images; {layout}: add images or "
                "remove the folder"
            )
        files_per_class.append([full for _, full in sorted(found)][:max_per_class])
    return class_names, files_per_class


# Images above this many pixels are refused before decoding (a few bytes of PNG or JPEG can
# declare a huge image: a "decompression bomb"). Pillow's default limit, ~ 0.27 GB as RGB.
MAX_IMAGE_PIXELS = 89_478_485
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0-SOF15 without DHT 0xC4, JPG 0xC8 and DAC 0xCC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _declared_size(data: bytes | bytearray) -> tuple[int, int] | None:
    """(height, width) declared by a PNG or JPEG header, or None when it cannot be read."""
    if data[:8] == _PNG_SIGNATURE and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_SOF:
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return height, width
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def _read_image(file: str) -> torch.Tensor:
    """Decodes a JPEG or PNG file as a (3, H, W) uint8 RGB image.

    Raises:
        OSError: If the file cannot be read.
        RuntimeError: If the bytes cannot be decoded, or the header declares more than
            ``MAX_IMAGE_PIXELS`` pixels (refused before decoding).
    """
    data = bytearray(Path(file).read_bytes())
    if not data:
        raise RuntimeError("the file is empty")
    size = _declared_size(data)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise RuntimeError(
            f"the header declares {size[1]} x {size[0]} pixels, over MAX_IMAGE_PIXELS = "
            f"{MAX_IMAGE_PIXELS} (a decompression bomb?); resize the image first"
        )
    image: torch.Tensor = decode_image(
        torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB
    )
    if image.dtype == torch.uint16:  # 16-bit PNG: rescale [0, 65535] to [0, 255], rounded
        image = ((image.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
    if image.dtype != torch.uint8:
        raise RuntimeError(f"unsupported pixel type {image.dtype} (expected 8 or 16 bits)")
    return image


def _first_visit(folder: str, visited: set[str]) -> bool:
    """Whether the walk should enter ``folder``: False (with a warning) for a link back to a
    folder already walked or to one of its ancestors, which would load images twice or loop."""
    real = os.path.realpath(folder)
    if real in visited or any(_contains(real, seen) for seen in visited):
        logger.warning(
            "Skipping %s: it links to %s, a folder already loaded (or one of its parents)",
            folder,
            real,
        )
        return False
    visited.add(real)
    return True


def _contains(parent: str, child: str) -> bool:
    """Whether the absolute path ``child`` is ``parent`` or lies under it."""
    try:
        return os.path.commonpath([parent, child]) == parent
    except ValueError:  # different drives (Windows)
        return False


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    max_per_class: int | None = None,
) -> ImageDataset:
    """Loads a torchvision ImageFolder directory into memory.

    The layout is ``root/<class>/<image>`` (images may also sit in sub-folders of a class
    folder). Classes are the sub-folders of ``root`` sorted alphabetically, so label ``k`` is
    the ``k``-th name; for the CIFAR-10 JPEG folder this is the standard CIFAR-10 label order.
    Files with the extensions ``.jpg``, ``.jpeg`` and ``.png`` (any case) are decoded as RGB
    with ``torchvision.io`` (16-bit PNGs are rescaled to 8 bits); other files and hidden entries
    are ignored. Undecodable files (corrupt, truncated, empty, or another format under an image
    extension) are skipped: each of the first 10 is named in a warning (the others at DEBUG
    level), then one warning gives the count. Links inside a class folder are followed, except
    links back to a folder already walked or to one of its parents (skipped with a warning).

    Args:
        image_size: If given, every image is resized (antialiased bilinear) to
            ``image_size x image_size``. If None, all images must already share one size.
        max_per_class: If given, only the first K files (sorted by name) of each class are
            loaded.

    Returns:
        An ImageDataset with images (N, 3, H, W) uint8 in [0, 255] and labels (N,) int64,
        ordered by class, then by file name.

    Raises:
        FileNotFoundError: If ``root`` does not exist.
        ValueError: If ``root`` is not a folder, has no class folders, a class folder holds no
            image, every image is undecodable, the sizes differ and ``image_size`` is None, or
            an argument is not a positive integer.
    """
    _check_positive("image_size", image_size)
    _check_positive("max_per_class", max_per_class)
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass {_ACCEPTED_SPECS}")
    if not path.is_dir():
        raise ValueError(
            f"{path} is a file, not a folder; pass an ImageFolder directory (root/<class>/<image>)"
        )
    classes, files_per_class = _list_class_files(path, max_per_class)
    n_files = sum(len(files) for files in files_per_class)
    logger.info("Loading %d images of %d classes from %s", n_files, len(classes), path)

    images: list[torch.Tensor] = []
    labels: list[int] = []
    first_of_size: dict[tuple[int, int], str] = {}
    corrupt: list[str] = []
    progress = tqdm(
        total=n_files,
        desc=f"Loading {path.name}",
        unit="img",
        disable=None if n_files > _PROGRESS_THRESHOLD else True,
    )
    with progress, _quiet_torchvision_io():
        for label, files in enumerate(files_per_class):
            for file in files:
                progress.update(1)
                try:
                    image = _read_image(file)
                except (OSError, RuntimeError, ValueError) as error:
                    # The first ones name the problem; the rest would flood the log.
                    level = (
                        logging.WARNING if len(corrupt) < _MAX_CORRUPT_WARNINGS else logging.DEBUG
                    )
                    logger.log(level, "Skipping undecodable image %s: %s", file, error)
                    corrupt.append(file)
                    continue
                if image_size is not None:
                    image = _resize(image, image_size)
                else:
                    first_of_size.setdefault((int(image.shape[1]), int(image.shape[2])), file)
                images.append(image)
                labels.append(label)

    if corrupt:
        logger.warning(
            "Skipped %d of %d image files under %s that could not be decoded (first: %s%s)",
            len(corrupt),
            n_files,
            path,
            corrupt[0],
            "; files after the first 10 are named at DEBUG level"
            if len(corrupt) > _MAX_CORRUPT_WARNINGS
            else "",
        )
        present = set(labels)
        empty = [name for k, name in enumerate(classes) if k not in present]
        if empty and images:
            logger.warning(
                "Classes %s have no decodable image left: their labels are kept but unused",
                empty,
            )
    if not images:
        raise ValueError(
            f"none of the {n_files} image files under {path} could be decoded; pass a folder "
            "of valid .jpg, .jpeg or .png images"
        )
    if len(first_of_size) > 1:
        examples = ", ".join(
            f"{h}x{w} ({file})" for (h, w), file in list(first_of_size.items())[:3]
        )
        raise ValueError(
            f"images under {path} have {len(first_of_size)} different sizes (height x width), "
            f"e.g. {examples}; pass image_size=... to resize them all to one square size"
        )
    return ImageDataset(
        images=torch.stack(images),
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=tuple(classes),
    )


def load_cifar(
    name: Literal["cifar10", "cifar100"],
    root: str | os.PathLike[str],
    *,
    train: bool = True,
    download: bool = False,
) -> ImageDataset:
    """Loads CIFAR-10 or CIFAR-100 through ``torchvision.datasets``.

    Args:
        root: The folder that contains (or will receive) ``cifar-10-batches-py`` or
            ``cifar-100-python``.
        train: Load the training split (50000 images) if True, else the test split (10000).
        download: Download the archive into ``root`` if the files are missing.

    Returns:
        An ImageDataset with images (N, 3, 32, 32) uint8 in [0, 255] and labels (N,) int64
        in the torchvision class order.

    Raises:
        ValueError: If ``name`` is not ``"cifar10"`` or ``"cifar100"``.
        FileNotFoundError: If the files are missing or corrupted and ``download`` is False.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    if name not in _CIFAR_FOLDERS:
        raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
    folder = _CIFAR_FOLDERS[name]
    path = Path(root).expanduser()
    dataset_cls = CIFAR10 if name == "cifar10" else CIFAR100
    try:
        dataset = dataset_cls(root=str(path), train=train, download=download)
    except RuntimeError as error:
        if download:
            raise
        raise FileNotFoundError(
            f"{name} files not found (or corrupted) in {path / folder}; pass download=True "
            f"(CLI: --download) to fetch them, or a root that contains {folder}"
        ) from error
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return ImageDataset(images=images, labels=labels, classes=tuple(dataset.classes))


def _read_sample_file(
    path: Path,
) -> tuple[dict[str, str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reads a bundled sample file: its metadata, JPEG bytes, offsets and labels (checked)."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled sample {path} is missing; reinstall robust-contrastive or "
            "rebuild it with tools/build_sample.py"
        )
    with safe_open(str(path), framework="pt") as handle:
        metadata: dict[str, str] = handle.metadata() or {}
        jpeg_bytes: torch.Tensor = handle.get_tensor("jpeg_bytes")
        offsets: torch.Tensor = handle.get_tensor("offsets")
        labels: torch.Tensor = handle.get_tensor("labels")
    version = metadata.get("format_version")
    if version != _SAMPLE_FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version!r}, expected "
            f"{_SAMPLE_FORMAT_VERSION!r}; upgrade robust-contrastive or rebuild the sample"
        )
    if offsets.shape != (labels.shape[0] + 1,) or int(offsets[-1]) != jpeg_bytes.numel():
        raise ValueError(f"{path} is inconsistent (offsets/labels/bytes); rebuild it")
    return metadata, jpeg_bytes, offsets, labels


def load_sample(*, held_out: bool = False) -> ImageDataset:
    """Loads one of the two CIFAR-10 samples bundled with the package.

    Both hold images of a JPEG re-encoding of the CIFAR-10 training set
    (``cifar10-train/<class>/NNNN.jpg``, 5,000 files per class) as their JPEG bytes (see
    ``assets/README.md``), ordered by class, then by file name.

    * ``held_out=False`` (``SAMPLE_PATH``, spec ``"sample"``): files ``0000``-``0499`` of each
      class, 5,000 images. **Most of them trained the bundled pretrained models**
      (``rocl-resnet18-w16-cifar10-cpu``, ``simclr-resnet18-w16-cifar10-cpu`` and their
      ``-probe`` linear probes): 4,722 were training images of both the encoders and the
      probes, 89 were their model-selection images and only 189 are held out
      (``SAMPLE_SPLIT_OVERLAP``). Use it to train and to try things out, not to measure the
      bundled models.
    * ``held_out=True`` (``HELD_OUT_PATH``, spec ``"sample-held-out"``): the 2,000-image
      evaluation split (200 per class) of the CIFAR-10 reproduction that made the bundled
      models (``experiments/results/cifar10_cpu_split.json``, key ``"val"``; file indices from
      [`sample_indices`][robust_contrastive.data.sample_indices]). None of these images trained
      or selected the bundled encoders or probes, so evaluating a bundled model on it
      reproduces the held-out figures of its model card (e.g. 37.9 % clean accuracy for
      ``rocl-resnet18-w16-cifar10-cpu-probe``); 189 of them are also in the 5,000-image sample.

    Args:
        held_out: Load the held-out sample instead of the 5,000-image one.

    Returns:
        An ImageDataset with images (N, 3, 32, 32) uint8 in [0, 255], labels (N,) int64 and
        the ten CIFAR-10 class names in label order (N = 5,000, or 2,000 with ``held_out``).

    Raises:
        FileNotFoundError: If the asset is missing from the installation.
        ValueError: If the asset has an unknown format version or inconsistent tensors.
    """
    path = HELD_OUT_PATH if held_out else SAMPLE_PATH
    metadata, jpeg_bytes, offsets, labels = _read_sample_file(path)
    chunks = [jpeg_bytes[start:end] for start, end in itertools.pairwise(offsets.tolist())]
    with _quiet_torchvision_io():
        decoded: list[torch.Tensor] = decode_jpeg(chunks, mode=ImageReadMode.RGB)
    classes = tuple(metadata["classes"].split(","))
    return ImageDataset(images=torch.stack(decoded), labels=labels.long(), classes=classes)


def sample_indices(*, held_out: bool = False) -> torch.Tensor:
    """Indices of a bundled sample's images in the full CIFAR-10 JPEG training folder.

    The indices count through the sorted listing of ``cifar10-train`` (classes in label
    order, 5,000 files per class sorted by name, the order of
    [`load_dataset`][robust_contrastive.load_dataset]), so index ``i`` is the file
    ``f"{classes[i // 5000]}/{i % 5000:04d}.jpg"``. These are the indices that
    ``experiments/results/cifar10_cpu_split.json`` uses, which makes the overlap of a sample
    with the bundled models' training images exact.

    Args:
        held_out: The held-out sample (indices read from its metadata) instead of the
            5,000-image sample (files ``0000``-``0499`` of each class).

    Returns:
        (N,) int64 indices in [0, 50000), in the sample's order (ascending), one per image of
        [`load_sample`][robust_contrastive.load_sample]`(held_out=held_out)`.

    Raises:
        FileNotFoundError: If the asset is missing from the installation.
        ValueError: If the asset does not record its indices.
    """
    metadata, _, _, labels = _read_sample_file(HELD_OUT_PATH if held_out else SAMPLE_PATH)
    if "indices" in metadata:
        indices = torch.tensor([int(i) for i in metadata["indices"].split(",")])
    elif "per_class" in metadata:  # the first per_class files of every class
        per_class = int(metadata["per_class"])
        n_classes = len(metadata["classes"].split(","))
        indices = (
            torch.arange(n_classes)[:, None] * _CIFAR10_TRAIN_PER_CLASS + torch.arange(per_class)
        ).flatten()
    else:
        raise ValueError("the sample records neither its indices nor per_class; rebuild it")
    if indices.shape != labels.shape:
        raise ValueError("the sample's recorded indices do not match its images; rebuild it")
    return indices.to(torch.int64)


def load_dataset(
    spec: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    train: bool = True,
    image_size: int | None = None,
    max_per_class: int | None = None,
) -> ImageDataset:
    """Loads a data set named by a string spec.

    Args:
        spec: ``"sample"`` or ``"sample-held-out"`` (the bundled samples: evaluate the bundled
            models on the held-out one; [`load_sample`][robust_contrastive.load_sample]),
            ``"cifar10"`` or ``"cifar100"`` ([`load_cifar`][robust_contrastive.data.load_cifar]),
            or the path of an ImageFolder directory
            ([`load_image_folder`][robust_contrastive.data.load_image_folder]). Names are matched
            case-insensitively and take precedence over folders of the same name.
        root: Folder with the CIFAR files (required for ``"cifar10"``/``"cifar100"``; ignored
            otherwise).
        download: Download CIFAR if missing (CIFAR only).
        train: Training split if True, else test split (CIFAR only; the sample and folders
            have a single split).
        image_size: If given, resize every image (antialiased) to ``image_size x image_size``.
        max_per_class: If given, keep only the first K images of each class.

    Returns:
        An ImageDataset with images (N, 3, H, W) uint8 in [0, 255] and labels (N,) int64.

    Raises:
        ValueError: If a CIFAR spec is given without ``root`` or an argument is invalid.
        FileNotFoundError: If ``spec`` is neither a known name nor an existing path, or the
            CIFAR files are missing and ``download`` is False.
    """
    _check_positive("image_size", image_size)
    _check_positive("max_per_class", max_per_class)
    name = spec.strip().lower() if isinstance(spec, str) else None
    if name in ("sample", "sample-held-out"):
        dataset = load_sample(held_out=name == "sample-held-out")
    elif name in _CIFAR_FOLDERS:
        if root is None:
            raise ValueError(
                f"{name!r} needs the folder that holds (or will receive) "
                f"{_CIFAR_FOLDERS[name]}: pass root=... (CLI: --data-root)"
            )
        dataset = load_cifar(cast(_CifarName, name), root, train=train, download=download)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"unknown data set {os.fspath(spec)!r}: it is neither a known name nor an "
                f"existing path; pass {_ACCEPTED_SPECS}"
            )
        return load_image_folder(path, image_size=image_size, max_per_class=max_per_class)
    if max_per_class is not None:
        dataset = dataset.subset(first_per_class(dataset.labels, max_per_class))
    if image_size is not None:
        dataset = replace(dataset, images=_resize(dataset.images, image_size))
    return dataset


def train_val_split(
    labels: torch.Tensor,
    *,
    val_per_class: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws a seeded, stratified train/validation split.

    Each class is shuffled with ``torch.Generator().manual_seed(seed)`` (classes in ascending
    label order) and its first ``val_per_class`` (or ``round(val_fraction * count)``, clamped
    to ``[1, count - 1]``) indices go to the validation set.

    Args:
        labels: (N,) integer class labels (any integer dtype, any values).
        val_per_class: Validation images per class; must be smaller than every class count.
        val_fraction: Fraction of each class, in (0, 1), used for validation.
        seed: The same seed gives the same split.

    Returns:
        ``(train_indices, val_indices)``: sorted (N_train,) and (N_val,) int64 tensors that
        are disjoint and together cover ``range(N)``.

    Raises:
        ValueError: If not exactly one of ``val_per_class`` / ``val_fraction`` is given, a value
            is out of range, ``labels`` is not a non-empty 1-D integer tensor, or a class is too
            small to split.
    """
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}; use labels.long()")
    if (val_per_class is None) == (val_fraction is None):
        raise ValueError(
            "pass exactly one of val_per_class (images per class) or val_fraction (in (0, 1))"
        )
    _check_positive("val_per_class", val_per_class)
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")

    fraction = val_fraction if val_fraction is not None else 0.0
    labels = labels.detach().cpu()
    generator = torch.Generator().manual_seed(seed)
    val_parts: list[torch.Tensor] = []
    for value in torch.unique(labels).tolist():
        members = (labels == value).nonzero().flatten()
        count = int(members.numel())
        if val_per_class is not None and val_per_class >= count:
            raise ValueError(
                f"val_per_class={val_per_class} leaves no training images for class "
                f"{value}, which has {count}; pass val_per_class < {count}"
            )
        if val_per_class is None and count < 2:
            raise ValueError(
                f"class {value} has a single image and cannot be split; remove it or use more data"
            )
        n_val = val_per_class or min(max(round(fraction * count), 1), count - 1)
        order = torch.randperm(count, generator=generator)
        val_parts.append(members[order[:n_val]])
    val_indices = torch.cat(val_parts).sort().values  # int64, as nonzero() returns
    is_val = torch.zeros(labels.numel(), dtype=torch.bool)
    is_val[val_indices] = True
    return (~is_val).nonzero().flatten(), val_indices


def first_per_class(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Positions of the first ``per_class`` images of every class (all of a smaller class).

    A deterministic, class-balanced subset: ``dataset.subset(first_per_class(dataset.labels,
    100))`` keeps the first 100 images of each class in their original order.

    Args:
        labels: (N,) integer class labels.
        per_class: images to keep per class, >= 1.

    Returns:
        Sorted (M,) int64 positions into ``labels``, M = sum over classes of
        ``min(per_class, count)``.

    Raises:
        ValueError: ``labels`` is not a 1-D integer tensor, or ``per_class`` is not a positive
            integer.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise ValueError("labels must be a 1-D torch.Tensor of class labels")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}; use labels.long()")
    check_positive_int("per_class", per_class)
    labels = labels.detach().cpu()
    keep = [(labels == value).nonzero().flatten()[:per_class] for value in torch.unique(labels)]
    return torch.cat(keep).sort().values if keep else torch.zeros(0, dtype=torch.int64)
