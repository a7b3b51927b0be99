"""Save an encoder and its projector with ``save_pretrained`` and load them with
``from_pretrained``: the reloaded models compute exactly the same features.

Every model of the library is stored as a folder holding ``config.json`` (the constructor's
arguments, a ``model_type`` and a ``format_version``) and ``model.safetensors`` (the weights;
no pickle, so loading never runs code). ``from_pretrained`` rebuilds the model from the config
alone, loads the weights strictly (a missing, unexpected or mis-shaped key is an error naming
the keys) and returns the model in eval mode. A training run's output folder has this layout:
``RoCLEncoder.from_pretrained(OUT)`` and ``ProjectionHead.from_pretrained(OUT / "projector")``.

Run (from the repository root)::

    python examples/save_and_load.py --out runs/example-save-load
    python examples/save_and_load.py --tiny --out /tmp/save-load-tiny
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from robust_contrastive import ProjectionHead, RoCLEncoder, load_sample


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="save_pretrained / from_pretrained round trip.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-save-load"),
        help="folder receiving encoder/ and projector/",
    )
    parser.add_argument("--arch", default="resnet18", help="resnet18, resnet34 or resnet50")
    parser.add_argument(
        "--width",
        type=int,
        default=64,
        help="channels of the first stage; 64 = the paper's (default: 64)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--tiny", action="store_true", help="a width-8 model, 8 images")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tiny:
        args.width = 8
    torch.manual_seed(args.seed)
    encoder = RoCLEncoder(args.arch, width=args.width).eval()
    projector = ProjectionHead(encoder.feature_dim).eval()  # Linear(F, 2048)-ReLU-Linear(2048, 128)

    encoder_dir = encoder.save_pretrained(args.out / "encoder")
    projector_dir = projector.save_pretrained(args.out / "projector")
    print(f"{encoder_dir}/config.json:", json.loads((encoder_dir / "config.json").read_text()))
    print(f"{projector_dir}/config.json:", json.loads((projector_dir / "config.json").read_text()))

    loaded_encoder = RoCLEncoder.from_pretrained(encoder_dir)  # in eval mode
    loaded_projector = ProjectionHead.from_pretrained(projector_dir, map_location="cpu")

    images = load_sample().images[: 8 if args.tiny else 64].float() / 255  # (B, 3, 32, 32)
    with torch.no_grad():
        features, loaded_features = encoder(images), loaded_encoder(images)
        latents, loaded_latents = projector(features), loaded_projector(loaded_features)
    if not (torch.equal(features, loaded_features) and torch.equal(latents, loaded_latents)):
        raise SystemExit("the reloaded models compute different outputs")
    print(
        f"identical features {tuple(features.shape)} and latents {tuple(latents.shape)} "
        "after the round trip"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
