"""Publish a trained model: evaluate it, save it with a generated model card, register it under
a short name and load it back by that name from an offline Hugging Face cache.

The script

1. trains a small RoCL encoder on part of the bundled CIFAR-10 sample (its output folder
   ``OUT/encoder`` already holds ``train_config.json`` and ``metrics.jsonl``). With ``--tiny``
   it starts instead from a copy of the bundled encoder ``rocl-resnet18-w16-cifar10-cpu``
   (weights, training record, data record and projector): a one-epoch encoder gives
   chance-level features, and a card of chance-level figures teaches nothing;
2. trains a clean linear probe on it (on the sample's images, less the 189 it shares with the
   held-out sample), evaluates the probe on a stratified
   subset of the bundled held-out sample ``load_sample(held_out=True)`` (images of every class
   that neither the bundled models nor this script ever trained or selected on; 100 per class,
   20 with ``--tiny``), with PGD-20 l-inf 8/255, step 2/255; then attaches the report to both
   folders: the model cards (``README.md``) now carry the figures, tied to the weights'
   SHA-256, with the images named. (A card refuses an evaluation on a single class and flags
   one on fewer than 100 images.)
3. lays the encoder folder out as the Hugging Face cache holds a downloaded repo
   (``OUT/hub-cache/models--ORG--NAME/snapshots/COMMIT``), registers it under a short name
   pinned to that commit with its checksums, and loads it by name with
   ``local_files_only=True`` (as with ``HF_HUB_OFFLINE=1``): the outputs are identical;
4. with ``--push ORG/NAME`` (and ``hf auth login`` done), uploads the encoder folder to the Hub.

Run (from the repository root)::

    python examples/publish_model.py --out runs/example-publish
    python examples/publish_model.py --tiny --out /tmp/publish-tiny     # about a minute
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
from robust_contrastive.data import sample_indices
from robust_contrastive.hub import push_folder_to_hub
from robust_contrastive.model_card import EVAL_RESULTS_NAME, weights_checksums
from robust_contrastive.registry import entry_from_folder, resolve_model_folder

COMMIT = "0" * 40  # the commit a real upload would return; pinned in the registry entry
BUNDLED_ENCODER = "rocl-resnet18-w16-cifar10-cpu"  # --tiny publishes a copy of it


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
    sample = load_sample()  # 5,000 images; most of them trained the bundled models
    # 189 of them are also in the held-out sample: leave them out, so that the test images below
    # are ones that neither the bundled models nor this script trained on.
    sample = sample.subset(~torch.isin(sample_indices(), sample_indices(held_out=True)))
    held_out = load_sample(held_out=True)  # 2,000 images no bundled model trained or selected on
    per_class = 20 if args.tiny else 100
    _, pick = train_val_split(held_out.labels, val_per_class=per_class, seed=args.seed)
    test_set = held_out.subset(pick)  # stratified: every class, per_class images each
    encoder_dir = args.out / "encoder"

    # 1. train (the trainer writes train_config.json and metrics.jsonl beside the weights)
    if args.tiny:  # the bundled encoder and its records, in place of a chance-level one
        shutil.rmtree(encoder_dir, ignore_errors=True)
        bundled = resolve_model_folder(BUNDLED_ENCODER)
        shutil.copytree(
            bundled, encoder_dir, ignore=shutil.ignore_patterns("*.md", EVAL_RESULTS_NAME)
        )
        encoder = RoCLEncoder.from_pretrained(encoder_dir)
        print(f"tiny: the bundled encoder {BUNDLED_ENCODER!r}, copied to {encoder_dir}")
    else:
        config = TrainConfig(width=16, epochs=2, batch_size=128, warmup_epochs=1, seed=args.seed)
        encoder = RoCLTrainer(config, encoder_dir).fit(sample).encoder

    # 2. probe, evaluate on held-out images, attach the report to both model cards
    probe = RobustLinearProbe(
        encoder, len(sample.classes), augment=False, epochs=50, batch_size=256
    )
    probe.fit(sample, seed=args.seed, progress=False)  # warns if the probe stays at chance
    probe_dir = probe.save_pretrained(args.out / "probe")
    # The evaluation set is always checked (a single class or < 100 images would be flagged);
    # --tiny skips the gradient-masking checks, which re-run PGD with 100 steps (minutes on CPU).
    report = evaluate_robustness(
        probe,
        test_set,
        ["linf-8/255"],
        seed=args.seed,
        sanity_checks=not args.tiny,
        progress=False,
    )
    report.info["weights_sha256"] = weights_checksums(probe_dir)
    split = (
        f"{len(test_set)} images of load_sample(held_out=True) ({per_class} per class, seed "
        f"{args.seed}), never trained or selected on"
    )
    description = f"clean linear probe trained on the {len(sample)} images of load_sample()"
    for folder in (probe_dir, encoder_dir):
        attach_evaluation(folder, report, dataset="cifar10", split=split, description=description)
    card = ModelCard.load(encoder_dir / "README.md")
    print(f"card: evaluated on {split}")
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
    images = test_set.images.float() / 255  # (N, 3, 32, 32) in [0, 1]
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
