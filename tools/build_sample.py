"""Build the CIFAR-10 samples bundled with robust-contrastive.

Takes the first ``--per-class`` files (sorted by name) of each class folder of the CIFAR-10
JPEG ImageFolder (``<source>/<class>/NNNN.jpg``), or, with ``--indices-from SPLIT.json --part
NAME``, the images whose indices into the sorted ImageFolder listing (classes sorted, then files
sorted by name: the order of ``robust_contrastive.data.load_dataset``) are listed under ``NAME``
in a split file, and stores their ORIGINAL JPEG bytes, unchanged, in one safetensors file with
the tensors

* ``jpeg_bytes``: (total_bytes,) uint8, all files concatenated in order;
* ``offsets``: (N + 1,) int64, image ``i`` is ``jpeg_bytes[offsets[i]:offsets[i + 1]]``;
* ``labels``: (N,) int64, the index of the class folder in sorted order;

and the string metadata ``classes`` (comma-separated, label order), ``source``,
``per_class`` and ``format_version`` (``"1"``); a sample built from a split file also records
``split_file``, ``split_part``, ``indices`` (the comma-separated indices, in stored order) and
``files`` (the comma-separated ``<class>/<file>`` names, in stored order).

Usage (from the repository root)::

    # the 5,000-image sample (files 0000-0499 of each class)
    python tools/build_sample.py --source ../shared/data/cifar10-train --per-class 500 \
        --out src/robust_contrastive/assets/cifar10_sample.safetensors
    # the 2,000-image held-out sample (the evaluation split of the CIFAR-10 reproduction)
    python tools/build_sample.py --source ../shared/data/cifar10-train \
        --indices-from experiments/results/cifar10_cpu_split.json --part val \
        --out src/robust_contrastive/assets/cifar10_heldout.safetensors

Relative ``--source`` and ``--out`` paths are resolved against the repository root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

logger = logging.getLogger("build_sample")

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMAT_VERSION = "1"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg"})


def _resolve(path: str) -> Path:
    """Resolves ``path`` against the repository root unless it is absolute."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (REPO_ROOT / candidate).resolve()


def list_folder(source: Path) -> tuple[list[str], list[list[Path]]]:
    """Lists the class folders (sorted) and each one's JPEG files (sorted by name).

    Args:
        source: ImageFolder root with one sub-folder per class.

    Returns:
        The sorted class names and, per class, its sorted JPEG files.

    Raises:
        FileNotFoundError: If ``source`` does not exist.
        ValueError: If ``source`` has no class folders.
    """
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a directory; pass --source <ImageFolder root>")
    classes = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{source} has no class folders; expected <source>/<class>/<image>.jpg")
    listing = [
        sorted(
            (p for p in (source / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: p.name,
        )
        for name in classes
    ]
    return classes, listing


def collect(source: Path, per_class: int) -> tuple[list[str], list[Path], list[int]]:
    """Lists the first ``per_class`` JPEG files (sorted by name) of every class folder.

    Args:
        source: ImageFolder root with one sub-folder per class.
        per_class: Files to take from each class.

    Returns:
        The sorted class names, the selected files and their labels.

    Raises:
        FileNotFoundError: If ``source`` does not exist.
        ValueError: If a class folder has fewer than ``per_class`` JPEG files.
    """
    classes, listing = list_folder(source)
    files: list[Path] = []
    labels: list[int] = []
    for label, jpegs in enumerate(listing):
        if len(jpegs) < per_class:
            raise ValueError(
                f"class folder {source / classes[label]} has {len(jpegs)} JPEG files, fewer "
                f"than --per-class {per_class}"
            )
        files.extend(jpegs[:per_class])
        labels.extend([label] * per_class)
    return classes, files, labels


def collect_indices(
    source: Path, split_file: Path, part: str
) -> tuple[list[str], list[Path], list[int], list[int]]:
    """Lists the images whose indices a split file records under ``part``.

    The indices count through the sorted ImageFolder listing: class folders sorted by name,
    and within each class the JPEG files sorted by name (the order of
    ``robust_contrastive.data.load_dataset``). The selection is returned ordered by class, then
    by file name (that is, by index).

    Args:
        source: ImageFolder root with one sub-folder per class.
        split_file: A JSON file with a list of integer indices under ``part``.
        part: The key of the list in ``split_file`` (e.g. ``"val"``).

    Returns:
        The sorted class names, the selected files, their labels and their sorted indices.

    Raises:
        FileNotFoundError: If ``source`` or ``split_file`` does not exist.
        ValueError: If ``part`` is missing, an index is out of range or repeated.
    """
    if not split_file.is_file():
        raise FileNotFoundError(f"{split_file} does not exist; pass --indices-from <split.json>")
    record = json.loads(split_file.read_text())
    if part not in record or not isinstance(record[part], list):
        keys = sorted(k for k, v in record.items() if isinstance(v, list))
        raise ValueError(f"{split_file} has no index list {part!r}; pass --part one of {keys}")
    indices = sorted(int(i) for i in record[part])
    if len(set(indices)) != len(indices):
        raise ValueError(f"{split_file}[{part!r}] repeats indices")
    classes, per_class = list_folder(source)
    listing = [file for jpegs in per_class for file in jpegs]
    listing_labels = [label for label, jpegs in enumerate(per_class) for _ in jpegs]
    if indices and not 0 <= indices[0] <= indices[-1] < len(listing):
        raise ValueError(
            f"{split_file}[{part!r}] has indices outside [0, {len(listing)}): was the split made "
            f"on another folder than {source}?"
        )
    return (
        classes,
        [listing[i] for i in indices],
        [listing_labels[i] for i in indices],
        indices,
    )


def canonicalise_header(path: Path) -> None:
    """Rewrites a safetensors header in a fixed key order so that rebuilds are byte-identical.

    ``safetensors`` writes the ``__metadata__`` entries in hash-map order, which changes from
    run to run. The rewritten header has the same length (same entries, compact JSON, padded
    with spaces as before), so the data offsets stay valid.

    Args:
        path: A safetensors file, rewritten in place.

    Raises:
        RuntimeError: If the canonical header would not fit into the original one.
    """
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    metadata = header.pop("__metadata__", None)
    ordered: dict[str, object] = {}
    if metadata is not None:
        ordered["__metadata__"] = dict(sorted(metadata.items()))
    for name in sorted(header, key=lambda key: header[key]["data_offsets"][0]):
        ordered[name] = header[name]
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > length:
        raise RuntimeError(f"canonical header of {path} is longer than the original")
    raw[8 : 8 + length] = text + b" " * (length - len(text))
    path.write_bytes(bytes(raw))


def _display_path(path: Path) -> str:
    """``path`` relative to the repository root when inside it (stable across checkouts)."""
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def build(
    source: Path,
    per_class: int,
    out: Path,
    *,
    split_file: Path | None = None,
    part: str | None = None,
) -> None:
    """Writes the sample file and checks that it round-trips byte for byte.

    Args:
        source: ImageFolder root with one sub-folder per class.
        per_class: Files to take from each class (ignored with ``split_file``).
        out: Output ``.safetensors`` path (parent folders are created).
        split_file: If given, take the images whose indices ``split_file`` lists under
            ``part`` instead of the first ``per_class`` of each class.
        part: The key of the index list in ``split_file``.

    Raises:
        RuntimeError: If the written file does not reproduce the source bytes.
        ValueError: If the selected images are not equally many per class.
    """
    extra: dict[str, str] = {}
    if split_file is not None:
        if part is None:
            raise ValueError("pass --part with --indices-from")
        classes, files, labels, indices = collect_indices(source, split_file, part)
        counts = {labels.count(label) for label in range(len(classes))}
        if len(counts) != 1:
            raise ValueError(f"{split_file}[{part!r}] is not class-balanced: counts {counts}")
        per_class = counts.pop()
        description = (
            f"the {len(files)} images ({per_class} per class) whose indices into the sorted "
            f"listing (classes, then file names) {_display_path(split_file)} lists under "
            f"{part!r}, ordered by class then file name"
        )
        extra = {
            "split_file": _display_path(split_file),
            "split_part": part,
            "split_sha256": hashlib.sha256(split_file.read_bytes()).hexdigest(),
            "indices": ",".join(str(i) for i in indices),
            "files": ",".join(f"{file.parent.name}/{file.name}" for file in files),
        }
    else:
        classes, files, labels = collect(source, per_class)
        description = f"first {per_class} files per class sorted by name"
    blobs = [file.read_bytes() for file in files]
    sizes = torch.tensor([len(blob) for blob in blobs], dtype=torch.int64)
    offsets = torch.zeros(len(blobs) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(sizes, dim=0)
    jpeg_bytes = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8)
    tensors = {
        "jpeg_bytes": jpeg_bytes,
        "offsets": offsets,
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    metadata = {
        "classes": ",".join(classes),
        "source": (
            f"CIFAR-10 training set (Krizhevsky 2009), JPEG re-encoding in ImageFolder layout "
            f"({source.name}/<class>/NNNN.jpg); {description}; JPEG bytes unchanged"
        ),
        "per_class": str(per_class),
        "format_version": FORMAT_VERSION,
        **extra,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=metadata)
    canonicalise_header(out)
    out.chmod(0o644)

    with safe_open(str(out), framework="pt") as handle:
        if handle.metadata() != metadata:
            raise RuntimeError(f"metadata of {out} does not round-trip")
        stored = handle.get_tensor("jpeg_bytes")
        stored_offsets = handle.get_tensor("offsets").tolist()
    for index, blob in enumerate(blobs):
        start, end = stored_offsets[index], stored_offsets[index + 1]
        if stored[start:end].numpy().tobytes() != blob:
            raise RuntimeError(f"round trip failed for {files[index]}")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    logger.info(
        "Wrote %s: %d images of %d classes, %d bytes (JPEG data %d bytes), sha256 %s",
        out,
        len(blobs),
        len(classes),
        out.stat().st_size,
        jpeg_bytes.numel(),
        digest,
    )


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and builds the sample."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        default="../shared/data/cifar10-train",
        help="CIFAR-10 JPEG ImageFolder root (relative paths: from the repository root)",
    )
    parser.add_argument("--per-class", type=int, default=500, help="files per class")
    parser.add_argument(
        "--indices-from",
        default=None,
        metavar="SPLIT_JSON",
        help="take the images whose indices (into the sorted ImageFolder listing) this JSON "
        "file lists under --part, instead of the first --per-class of each class",
    )
    parser.add_argument(
        "--part", default=None, help="the key of the index list in --indices-from (e.g. val)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output file (relative paths: from the repository root; default, without "
        "--indices-from only: src/robust_contrastive/assets/cifar10_sample.safetensors)",
    )
    args = parser.parse_args(argv)
    if args.per_class < 1:
        parser.error("--per-class must be a positive integer")
    if (args.indices_from is None) != (args.part is None):
        parser.error("--indices-from and --part go together")
    if args.out is None:
        if args.indices_from is not None:  # never overwrite the 5,000-image sample by default
            parser.error("--indices-from needs --out (e.g. the held-out sample's file)")
        args.out = "src/robust_contrastive/assets/cifar10_sample.safetensors"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(
        _resolve(args.source),
        args.per_class,
        _resolve(args.out),
        split_file=None if args.indices_from is None else _resolve(args.indices_from),
        part=args.part,
    )


if __name__ == "__main__":
    main()
