"""Install the models of a CIFAR-10 reproduction into the package: the one script that writes src/.

From a finished run of ``experiments/reproduce_cifar10.py`` (its run folder and its results
file), this copies the RoCL and SimCLR encoders (with their ``projector/``) and their LE probes
into ``src/robust_contrastive/pretrained/<name>/``, attaches their held-out evaluations from the
results file, registers them in ``registry.json`` as bundled entries and records the entries in
the results file (key ``"registered"``). The entries are unpublished (``revision=None``): after
``robust-contrastive push FOLDER ORG/NAME``, pin the commit it made with
``entry_from_folder(..., revision=COMMIT)``. The copies carry no data records yet: write them and
regenerate the cards right after (docs/hub.md). From the repository root::

    python tools/register_pretrained.py --run runs/cifar10-cpu \\
        --results experiments/results/cifar10_cpu.json
    python tools/write_bundled_cards.py
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from robust_contrastive import registry
from robust_contrastive.model_card import attach_evaluation
from robust_contrastive.registry import PRETRAINED_DIR


def register(out: Path, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Copy the RoCL and SimCLR encoders and LE probes of run ``out`` into the package and
    register them; returns the registry entries written."""
    entries = []
    split = (
        f"{results['splits']['n_eval']} held-out CIFAR-10 training images (seed "
        f"{results['budget']['seed']}), never trained or selected on"
    )
    for method, title in (("rocl", "RoCL"), ("simclr", "SimCLR")):
        if method not in results["training"]:
            continue
        base = f"{method}-resnet18-w16-cifar10-cpu"
        targets = {
            base: out / method,
            f"{base}-probe": out / method / "probe-le",
        }
        for name, source in targets.items():
            target = PRETRAINED_DIR / name
            if target.exists():
                shutil.rmtree(target)
            if name == base:  # the encoder and its projector: weights, configs, records
                target.mkdir(parents=True)
                for item in source.iterdir():
                    if item.is_file() and item.suffix in (".json", ".jsonl", ".safetensors"):
                        shutil.copy2(item, target / item.name)
                shutil.copytree(source / "projector", target / "projector")
            else:
                shutil.copytree(source, target)
            groups = results["evaluations"].get(f"{method}-le", {})
            for report in groups.values():
                if report is not None:
                    attach_evaluation(
                        target,
                        report,
                        dataset="cifar10",
                        split=split,
                        description=f"{title} encoder, standard linear evaluation (clean probe)",
                    )
            kind = "encoder (with projector/)" if name == base else "linear probe (LE)"
            entry = registry.entry_from_folder(
                target,
                name=name,
                repo_id=f"robust-contrastive/{name}",
                revision=None,
                description=(
                    f"{title} resnet18 width 16, trained without labels on 8,000 CIFAR-10 "
                    f"images ({results['budget']['epochs']} epochs, "
                    f"experiments/reproduce_cifar10.py): {kind}"
                ),
                bundled=True,
            )
            registry.write_registry_entry(entry)
            entries.append(asdict(entry))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the reproduction's --out folder")
    parser.add_argument(
        "--results", type=Path, required=True, help="its results file (cifar10_cpu.json)"
    )
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    results["registered"] = register(args.run, results)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    for entry in results["registered"]:
        print(f"registered {entry['name']}")
    print("now write the data records and cards: python tools/write_bundled_cards.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
