"""Write the data records and comparisons of the bundled models and regenerate their cards.

For each bundled model folder under ``src/robust_contrastive/pretrained`` (the RoCL and SimCLR
encoders of the CPU reproduction and their linear probes), this script writes

* ``provenance.json``: the exact images of each split of the reproduction
  (``experiments/results/cifar10_cpu_split.json``) with their overlap with the bundled samples
  (``load_sample()`` and ``load_sample(held_out=True)``, from ``sample_indices``), the probe's
  selection record (``experiments/results/cifar10_cpu.json``) and the model's limitations;
* ``comparison.json``: the model beside its SimCLR / RoCL twin and the supervised AT baseline of
  the same run (from ``experiments/results/cifar10_cpu.json``) and beside the paper's figures
  (quoted as the paper's, at its scale, from the reference settings);
* the encoder's ``train_config.json``, ``metrics.jsonl`` and data record into its
  ``projector/`` and into its probe's ``encoder/``, so that their cards show how they were
  trained;

then regenerates every ``README.md`` (the folders and their ``projector/`` / ``encoder/``
sub-folders) with ``write_model_card``. No weight file is touched: the registry's SHA-256
values stay valid (checked at the end). Run from the repository root, and again after every
``tools/register_pretrained.py`` (which copies the folders anew, without these records;
tests/test_model_card.py fails on a bundled card that lacks them or is stale)::

    python tools/write_bundled_cards.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from robust_contrastive.data import sample_indices
from robust_contrastive.model_card import (
    COMPARISON_NAME,
    METRICS_NAME,
    PROVENANCE_NAME,
    SIDE_FILES_VERSION,
    TRAIN_CONFIG_NAME,
    write_model_card,
)
from robust_contrastive.registry import PRETRAINED_DIR, get_pretrained, verify_checksums

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results" / "cifar10_cpu.json"
SPLIT = ROOT / "experiments" / "results" / "cifar10_cpu_split.json"
N_TRAIN_IMAGES = 50_000  # the CIFAR-10 training set: the listing the split indices count through
# The paper's figures (Kim et al., NeurIPS 2020, Table 1; ResNet18 at width 64, 1,000 epochs on
# the 50,000 CIFAR-10 training images, tested on the CIFAR-10 test set), with the independent
# AutoAttack re-evaluation of RoCL's SLF model, as quoted in the project's reference settings.
PAPER = {
    "rocl": {"clean": "83.71", "pgd_legacy": "40.27", "autoattack": "26.12 (independent)"},
    "simclr": {"clean": "about 91", "pgd_legacy": "under 1", "autoattack": "-"},
}
PAPER_SCALE = "resnet18 width 64, 1,000 epochs, 50,000 images; CIFAR-10 test set"


def _pct(report: dict[str, Any] | None, threat: str | None) -> str:
    """An accuracy of a report in %, with its number of images."""
    if report is None:
        return "-"
    if threat is None:
        return f"{100 * report['clean_accuracy']:.2f} (n={report['n_images']})"
    for result in report["results"]:
        if result["name"] == threat:
            return f"{100 * result['accuracy']:.2f} (n={result['n_images']})"
    return "-"


def provenance(
    method: str, results: dict[str, Any], split: dict[str, list[int]], probe: bool
) -> dict[str, Any]:
    """The data record of one bundled folder (``probe``: the linear probe's folder)."""
    budget, sizes = results["budget"], results["splits"]
    val, select = set(split["val"]), set(split["select"])
    encoder_train = set(split["encoder_train"])
    pool = set(range(N_TRAIN_IMAGES)) - val - select
    sample = set(sample_indices().tolist())
    held_out = set(sample_indices(held_out=True).tolist())
    if held_out != val:
        raise SystemExit("load_sample(held_out=True) is not the evaluation split: rebuild it")
    samples = {"load_sample()": sample, "load_sample(held_out=True)": held_out}

    def overlap(indices: set[int]) -> dict[str, int]:
        return {name: len(indices & images) for name, images in samples.items()}

    listing = "split file (`experiments/results/cifar10_cpu_split.json`)"
    title = "RoCL" if method == "rocl" else "SimCLR"
    splits = [
        {
            "name": "encoder training",
            "role": f"trained the {title} encoder, without labels",
            "images": len(encoder_train),
            "which": f"the first {budget['train_per_class']} images per class of the pool; "
            f"key `encoder_train` of the {listing}",
            "overlap": overlap(encoder_train),
        },
        {
            "name": "probe training",
            "role": "trained the linear probe (LE)",
            "images": len(pool),
            "which": "the pool: every image in neither `val` nor `select`",
            "overlap": overlap(pool),
        },
        {
            "name": "model selection",
            "role": "picked the probe's epoch (clean accuracy)",
            "images": len(select),
            "which": f"{budget['select_per_class']} per class, seeded; key `select`",
            "overlap": overlap(select),
        },
        {
            "name": "evaluation",
            "role": "held out: never trained or selected on",
            "images": len(val),
            "which": f"{budget['eval_per_class']} per class, seeded; key `val`",
            "overlap": overlap(val),
        },
    ]
    if sizes["n_train"] != len(encoder_train) or sizes["n_pool"] != len(pool):
        raise SystemExit("the split file does not match the results file")
    seen = len(sample - val)
    record: dict[str, Any] = {
        "format_version": SIDE_FILES_VERSION,
        "dataset": (
            "CIFAR-10 training set (50,000 images, a JPEG re-encoding in an ImageFolder "
            "`cifar10-train/<class>/NNNN.jpg`; index i is the file "
            "`classes[i // 5000]/{i % 5000:04d}.jpg`), split by "
            "`experiments/reproduce_cifar10.py` (seed "
            f"{budget['seed']}). The CIFAR-10 test set was not used."
        ),
        "image_size": [32, 32],
        "splits": splits,
        "notes": [
            f"Of the 5,000 images of `load_sample()` (files 0000-0499 of each class), "
            f"{len(sample & encoder_train):,} trained the encoder, {len(sample & pool):,} the "
            f"probe and {len(sample & select):,} selected the probe's epoch; only "
            f"{len(sample & val):,} are held out. `load_sample(held_out=True)` (CLI: "
            "`--data sample-held-out`) is exactly the evaluation split: evaluating on it "
            "reproduces the Evaluation section.",
        ],
        "limitations": [
            f"Trained on a CPU budget: {budget['arch']} at width {budget['width']}, "
            f"{len(encoder_train):,} images, {budget['epochs']} epochs (the paper: width 64, "
            "50,000 images, 1,000 epochs). Accuracies are far below the paper's (see "
            "Comparison); use it to try the library and to study robustness at small scale, "
            "not as a strong model.",
            f"{seen:,} of the 5,000 images of `load_sample()` trained the encoder or its probe, "
            "or selected the probe's epoch: "
            "figures measured there are inflated. Evaluate it on "
            "`load_sample(held_out=True)` or other images it never saw.",
        ],
    }
    if probe:
        stage = results["probes"][f"{method}-le"]
        history = stage["history"]
        kept = history[stage["best_epoch"] - 1]
        record["probe"] = {
            "training images": f"{stage['n_images']:,} (the pool), un-augmented clean features",
            "selected on": f"the model-selection split ({len(select):,} images), clean accuracy",
            "kept epoch": f"{stage['best_epoch']} of {len(history)}",
            "accuracy at the kept epoch": (
                f"{100 * kept['train_accuracy']:.2f} % training, "
                f"{100 * kept['val_accuracy']:.2f} % selection split"
            ),
        }
    return record


def comparison(method: str, results: dict[str, Any]) -> dict[str, Any]:
    """This model beside its twin, the AT baseline of the same run and the paper."""
    evaluations = results["evaluations"]
    budget = results["budget"]
    scale = (
        f"{budget['arch']} width {budget['width']}, {budget['epochs']} epochs, "
        f"{results['splits']['n_train']:,} images; {results['splits']['n_eval']:,} held-out"
    )
    names = {"rocl": "RoCL, LE", "simclr": "SimCLR, LE", "at": "supervised PGD-AT"}
    rows = []
    for model in ("rocl", "simclr", "at"):
        key = model if model == "at" else f"{model}-le"
        group = evaluations.get(key, {})
        name = names[model] + (" (this model)" if model == method else "")
        rows.append(
            [
                f"**{name}**" if model == method else name,
                _pct(group.get("pgd20"), None),
                _pct(group.get("pgd20"), "linf-8/255"),
                _pct(group.get("other"), "linf-8/255-legacy"),
                _pct(group.get("autoattack"), "autoattack-linf-8/255"),
                f"this run: {scale}",
            ]
        )
    for model in ("rocl", "simclr"):
        paper = PAPER[model]
        rows.append(
            [
                f"{names[model].split(',')[0]}, the paper",
                paper["clean"],
                "-",
                paper["pgd_legacy"],
                paper["autoattack"],
                PAPER_SCALE,
            ]
        )
    return {
        "format_version": SIDE_FILES_VERSION,
        "tables": [
            {
                "title": "Accuracy (%) under l-inf attacks at eps 8/255",
                "columns": [
                    "model",
                    "clean",
                    "PGD-20, step 2/255",
                    "PGD-20, step eps/10 (the original's)",
                    "AutoAttack",
                    "scale",
                ],
                "rows": rows,
                "notes": [
                    "This run's figures come from `experiments/results/cifar10_cpu.json` "
                    "(`experiments/reproduce_cifar10.py`, the same images and budget for the "
                    "three models; n = number of held-out images). The paper's figures are "
                    "the paper's (Kim et al., NeurIPS 2020, Table 1: RoCL with standard linear "
                    "evaluation, SimCLR), at the paper's scale and on the CIFAR-10 test set, "
                    "with an independent AutoAttack re-evaluation of RoCL; they are not "
                    "comparable figure for figure with this run's. The original robustness "
                    "test uses a PGD step of eps/10, weaker than today's step 2/255.",
                ],
            }
        ],
    }


def _write(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def main() -> int:
    results = json.loads(RESULTS.read_text())
    split = json.loads(SPLIT.read_text())
    for method in ("rocl", "simclr"):
        base = f"{method}-resnet18-w16-cifar10-cpu"
        encoder_dir, probe_dir = PRETRAINED_DIR / base, PRETRAINED_DIR / f"{base}-probe"
        for folder, is_probe in ((encoder_dir, False), (probe_dir, True)):
            _write(folder / PROVENANCE_NAME, provenance(method, results, split, is_probe))
            _write(folder / COMPARISON_NAME, comparison(method, results))
        for sub in (encoder_dir / "projector", probe_dir / "encoder"):  # the same encoder's run
            _write(sub / PROVENANCE_NAME, provenance(method, results, split, False))
            for name in (TRAIN_CONFIG_NAME, METRICS_NAME):
                shutil.copy2(encoder_dir / name, sub / name)
        for folder in (
            encoder_dir,
            encoder_dir / "projector",
            probe_dir,
            probe_dir / "encoder",
        ):
            print("wrote", write_model_card(folder).relative_to(ROOT))
        for name in (base, f"{base}-probe"):
            entry = get_pretrained(name)
            if entry is None or entry.folder is None:
                raise SystemExit(f"{name} is not a bundled registered model")
            verify_checksums(entry, entry.folder)
            print("checksums valid:", name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
