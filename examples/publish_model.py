"""Publish a trained model: evaluate it, save it with a generated model card, register it under
a short name and load it back by that name from an offline Hugging Face cache.

The script

1. trains a small RoCL encoder on part of the bundled CIFAR-10 sample (its output folder
   ``OUT/encoder`` already holds ``train_config.json`` and ``metrics.jsonl``);
2. trains a clean linear probe on it and evaluates the probe on held-out images (PGD-20 l-inf
   8/255, step 2/255), then attaches the report to both folders: the model cards
   (``README.md``) now carry the figures, tied to the weights' SHA-256;
3. lays the encoder folder out as the Hugging Face cache holds a downloaded repo
   (``OUT/hub-cache/models--ORG--NAME/snapshots/COMMIT``), registers it under a short name
   pinned to that commit with its checksums, and loads it by name with
   ``local_files_only=True`` (as with ``HF_HUB_OFFLINE=1``): the outputs are identical;
4. with ``--push ORG/NAME`` (and ``hf auth login`` done), uploads the encoder folder to the Hub.

Run (from the repository root)::

    python examples/publish_model.py --out runs/example-publish
    python examples/publish_model.py --tiny --out /tmp/publish-tiny     # seconds
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub import ModelCard

from robust_contrastive import (
    RobustLinearProbe,
    RoCLEncoder,
    RoCLTrainer,
    TrainConfig,
    attach_evaluation,
    evaluate_robustness,
    list_pretrained,
    load_sample,
    register_pretrained,
    train_val_split,
)
from robust_contrastive.hub import push_folder_to_hub
from robust_contrastive.model_card import weights_checksums
from robust_contrastive.registry import entry_from_folder

COMMIT = "0" * 40  # the commit a real upload would return; pinned in the registry entry


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate, card, register and reload a model.")
    parser.add_argument("--out", type=Path, default=Path("runs/example-publish"))
    parser.add_argument("--name", default="my-rocl-r18", help="short registry name")
    parser.add_argument("--repo-id", default="my-org/my-rocl-r18", help="Hub repo id")
    parser.add_argument("--push", metavar="ORG/NAME", help="upload the encoder folder there")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sample = load_sample()
    train_idx, val_idx = train_val_split(sample.labels, val_per_class=50, seed=args.seed)
    train_set, held_out = sample.subset(train_idx), sample.subset(val_idx)  # never mixed
    if args.tiny:
        train_set = train_set.subset(torch.arange(64))
        held_out = held_out.subset(torch.arange(16))

    # 1. train (the trainer writes train_config.json and metrics.jsonl beside the weights)
    config = TrainConfig(
        width=8 if args.tiny else 16,
        epochs=1 if args.tiny else 2,
        batch_size=32 if args.tiny else 128,
        warmup_epochs=1,
        attack_steps=1 if args.tiny else 7,
        projection_hidden_dim=32 if args.tiny else 2048,
        seed=args.seed,
        progress=not args.tiny,
    )
    encoder_dir = args.out / "encoder"
    encoder = RoCLTrainer(config, encoder_dir).fit(train_set).encoder

    # 2. probe, evaluate on held-out images, attach the report to both model cards
    probe = RobustLinearProbe(
        encoder, len(sample.classes), augment=False, epochs=3 if args.tiny else 50
    )
    probe.fit(train_set, seed=args.seed, progress=False)
    probe_dir = probe.save_pretrained(args.out / "probe")
    report = evaluate_robustness(probe, held_out, ["linf-8/255"], seed=args.seed, progress=False)
    report.info["weights_sha256"] = weights_checksums(probe_dir)
    split = f"{len(held_out)} held-out images of the bundled sample"
    for folder in (probe_dir, encoder_dir):
        attach_evaluation(folder, report, dataset="cifar10", split=split, description="clean LE")
    card = ModelCard.load(encoder_dir / "README.md")
    for result in card.data.eval_results or []:
        print(f"card: {result.metric_name} = {result.metric_value} %")

    # 3. a hub-layout cache, a registry entry pinned to the commit, and loading by name offline
    org, name = args.repo_id.split("/")
    cache = args.out / "hub-cache"
    snapshot = cache / f"models--{org}--{name}" / "snapshots" / COMMIT
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(encoder_dir, snapshot, ignore=shutil.ignore_patterns("checkpoints"))
    (snapshot.parents[1] / "refs").mkdir(parents=True, exist_ok=True)
    (snapshot.parents[1] / "refs" / "main").write_text(COMMIT)
    entry = entry_from_folder(
        snapshot, name=args.name, repo_id=args.repo_id, revision=COMMIT, description="example"
    )
    register_pretrained(entry, overwrite=True)
    print("registered:", [e.name for e in list_pretrained()])
    loaded = RoCLEncoder.from_pretrained(args.name, cache_dir=cache, local_files_only=True)
    images = held_out.images.float() / 255  # (N, 3, 32, 32) in [0, 1]
    with torch.no_grad():
        if not torch.equal(loaded(images), encoder.eval()(images)):
            raise SystemExit("the model loaded by name computes different features")
    print(f"loaded {args.name!r} offline at revision {COMMIT[:10]}: identical features")

    # 4. publish (needs network and a token)
    if args.push:
        print("pushed:", push_folder_to_hub(encoder_dir, args.push))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
