"""Build the CIFAR-10 sample bundled with robust-contrastive.

Takes the first ``--per-class`` files (sorted by name) of each class folder of the CIFAR-10
JPEG ImageFolder (``<source>/<class>/NNNN.jpg``) and stores their ORIGINAL JPEG bytes,
unchanged, in one safetensors file with the tensors

* ``jpeg_bytes``: (total_bytes,) uint8, all files concatenated in order;
* ``offsets``: (N + 1,) int64, image ``i`` is ``jpeg_bytes[offsets[i]:offsets[i + 1]]``;
* ``labels``: (N,) int64, the index of the class folder in sorted order;

and the string metadata ``classes`` (comma-separated, label order), ``source``,
``per_class`` and ``format_version`` (``"1"``).

Usage (from the repository root)::

    python tools/build_sample.py --source ../shared/data/cifar10-train --per-class 500 \
        --out src/robust_contrastive/assets/cifar10_sample.safetensors

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
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a directory; pass --source <ImageFolder root>")
    classes = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{source} has no class folders; expected <source>/<class>/<image>.jpg")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        jpegs = sorted(
            (p for p in (source / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: p.name,
        )
        if len(jpegs) < per_class:
            raise ValueError(
                f"class folder {source / name} has {len(jpegs)} JPEG files, fewer than "
                f"--per-class {per_class}"
            )
        files.extend(jpegs[:per_class])
        labels.extend([label] * per_class)
    return classes, files, labels


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


def build(source: Path, per_class: int, out: Path) -> None:
    """Writes the sample file and checks that it round-trips byte for byte.

    Args:
        source: ImageFolder root with one sub-folder per class.
        per_class: Files to take from each class.
        out: Output ``.safetensors`` path (parent folders are created).

    Raises:
        RuntimeError: If the written file does not reproduce the source bytes.
    """
    classes, files, labels = collect(source, per_class)
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
            f"({source.name}/<class>/NNNN.jpg); first {per_class} files per class sorted by "
            "name; JPEG bytes unchanged"
        ),
        "per_class": str(per_class),
        "format_version": FORMAT_VERSION,
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
        "--out",
        default="src/robust_contrastive/assets/cifar10_sample.safetensors",
        help="output file (relative paths: from the repository root)",
    )
    args = parser.parse_args(argv)
    if args.per_class < 1:
        parser.error("--per-class must be a positive integer")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(_resolve(args.source), args.per_class, _resolve(args.out))


if __name__ == "__main__":
    main()
