"""Model cards: a ``README.md`` with Hugging Face YAML metadata, generated from a model folder.

A folder written by ``save_pretrained`` holds ``config.json`` and ``model.safetensors`` and may
hold, written by this library:

* ``train_config.json``: the :class:`~robust_contrastive.TrainConfig` of the run that produced
  the weights (``RoCLTrainer`` writes it beside the encoder);
* ``metrics.jsonl``: one JSON line of training metrics per epoch (also the trainer's);
* ``eval_results.json``: evaluation reports attached with :func:`attach_evaluation`, each tied
  to the SHA-256 of the weights it evaluated.

The card is a view of these files: :func:`write_model_card` regenerates ``README.md`` from them
and nothing in it is typed by hand. A result whose weights checksum no longer matches the
folder's weights (the folder was overwritten by another model) is left out, with a warning.
The YAML header follows the Hub's model-index format: each metric carries its attack settings
(attack, norm, eps, step, steps, number of images, seed) in ``args``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, sha256_file

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
EVAL_RESULTS_NAME = "eval_results.json"
TRAIN_CONFIG_NAME = "train_config.json"
METRICS_NAME = "metrics.jsonl"
EVAL_RESULTS_VERSION = 1
# Files whose bytes define a model's outputs: its own weights and, for classifiers, its encoder's.
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "encoder/model.safetensors")

DATASET_NAMES: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "sample": "CIFAR-10 (the bundled 5,000-image sample)",
}
_PIPELINE_TAGS: dict[str, str] = {
    "rocl-encoder": "image-feature-extraction",
    "rocl-projection-head": "feature-extraction",
    "rocl-linear-probe": "image-classification",
    "rocl-robust-classifier": "image-classification",
}
_CLASS_NAMES: dict[str, str] = {
    "rocl-encoder": "RoCLEncoder",
    "rocl-projection-head": "ProjectionHead",
    "rocl-linear-probe": "RobustLinearProbe",
    "rocl-robust-classifier": "RobustClassifier",
}
_DESCRIPTIONS: dict[str, str] = {
    "rocl-encoder": "An image encoder f(x) trained without labels",
    "rocl-projection-head": "The projection head g(f(x)) of a contrastive encoder",
    "rocl-linear-probe": "A linear classifier on a frozen encoder",
    "rocl-robust-classifier": "An encoder and a linear head fine-tuned together",
}
_CITATION = """@inproceedings{kim2020adversarial,
  title     = {Adversarial Self-Supervised Contrastive Learning},
  author    = {Kim, Minseon and Tack, Jihoon and Hwang, Sung Ju},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2020}
}"""


def weights_checksums(folder: str | os.PathLike[str]) -> dict[str, str]:
    """SHA-256 of the weight files that define the model in ``folder``.

    Returns:
        ``{relative path: hex digest}`` for ``model.safetensors`` and, when present,
        ``encoder/model.safetensors``.

    Raises:
        FileNotFoundError: ``folder`` has no ``model.safetensors``.
    """
    root = Path(folder)
    if not (root / WEIGHT_FILES[0]).is_file():
        raise FileNotFoundError(
            f"{root / WEIGHT_FILES[0]} not found: expected a folder written by save_pretrained."
        )
    return {name: sha256_file(root / name) for name in WEIGHT_FILES if (root / name).is_file()}


def attach_evaluation(
    folder: str | os.PathLike[str],
    report: Any,
    *,
    dataset: str,
    split: str,
    description: str = "",
) -> Path:
    """Record an evaluation report in ``folder/eval_results.json`` and regenerate the card.

    The record is tied to the checksums of the folder's weights, so the card only ever shows
    figures measured on the weights it sits beside. A report made by ``robust-contrastive
    evaluate`` carries the checksums of the model it evaluated (``info["weights_sha256"]``);
    it may be attached to that model's folder or to its encoder's folder, and to no other.

    Args:
        folder: a ``save_pretrained`` folder (encoder, probe or classifier).
        report: a :class:`~robust_contrastive.RobustnessReport` or its ``to_dict()``.
        dataset: the dataset id of the evaluation images (``"cifar10"``).
        split: which images, e.g. ``"held-out 1,000 images of the training set"``.
        description: how the figures were obtained (e.g. ``"standard linear evaluation"``).

    Returns:
        The path of the regenerated ``README.md``.

    Raises:
        ValueError: the report evaluated other weights, or is not a report.
    """
    root = Path(folder)
    data = report.to_dict() if hasattr(report, "to_dict") else report
    data = dict(data) if isinstance(data, Mapping) else data
    if not isinstance(data, dict) or "clean_accuracy" not in data or "results" not in data:
        raise ValueError(
            "report must be a RobustnessReport (or its to_dict()) from evaluate_robustness."
        )
    checksums = weights_checksums(root)
    evaluated = data.get("info", {}).get("weights_sha256")
    if evaluated and checksums[WEIGHT_FILES[0]] not in dict(evaluated).values():
        raise ValueError(
            f"this report evaluated other weights than {root / WEIGHT_FILES[0]} (checksums "
            f"{evaluated}); attach it to the folder of the model it evaluated, or to that "
            "model's encoder folder."
        )
    entries = [e for e in _read_eval_results(root) if e["weights_sha256"] == checksums]
    entries.append(
        {
            "weights_sha256": checksums,
            "dataset": dataset,
            "split": split,
            "description": description,
            "report": data,
        }
    )
    atomic_write_text(
        root / EVAL_RESULTS_NAME,
        json.dumps({"format_version": EVAL_RESULTS_VERSION, "entries": entries}, indent=2) + "\n",
    )
    return write_model_card(root)


def write_model_card(
    folder: str | os.PathLike[str], *, repo_id: str | None = None, license: str = "mit"
) -> Path:
    """(Re)generate ``folder/README.md`` from the folder's files; returns its path."""
    root = Path(folder)
    return atomic_write_text(
        root / CARD_NAME, render_model_card(root, repo_id=repo_id, license=license)
    )


def render_model_card(
    folder: str | os.PathLike[str], *, repo_id: str | None = None, license: str = "mit"
) -> str:
    """The model card of a ``save_pretrained`` folder: YAML metadata and a markdown body.

    Args:
        folder: a folder with ``config.json`` and ``model.safetensors`` (see module docstring).
        repo_id: the Hub repo the card is for (used in the loading snippet and as model name).
        license: the license id of the weights.

    Returns:
        The full ``README.md`` text.
    """
    from huggingface_hub import EvalResult, ModelCardData

    root = Path(folder)
    config = json.loads((root / "config.json").read_text())
    model_type = str(config.get("model_type", "unknown"))
    training = _read_json(root / TRAIN_CONFIG_NAME)
    history = _read_metrics(root / METRICS_NAME)
    checksums = weights_checksums(root)
    entries = []
    for entry in _read_eval_results(root):
        if entry["weights_sha256"] == checksums:
            entries.append(entry)
        else:
            logger.warning(
                "%s: an evaluation of other weights (%s) is left out of the model card",
                root / EVAL_RESULTS_NAME,
                entry["weights_sha256"],
            )
    name = repo_id or root.resolve().name
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=entry["dataset"],
            dataset_name=DATASET_NAMES.get(entry["dataset"], entry["dataset"]),
            dataset_split=entry["split"],
            metric_type="accuracy",
            metric_name=metric_name,
            metric_value=round(100 * accuracy, 2),
            metric_args=args,
        )
        for entry in entries
        for metric_name, accuracy, args in _metrics(entry["report"])
    ]
    datasets = sorted({e["dataset"] for e in entries if e["dataset"] != "sample"})
    tags = ["robust-contrastive", "adversarial-robustness", "pytorch", "safetensors"]
    if training is not None:
        tags.append("rocl" if training.get("adversarial", True) else "simclr")
        tags += ["self-supervised-learning", "contrastive-learning"]
    card_data = ModelCardData(
        library_name="robust-contrastive",
        license=license,
        tags=tags,
        datasets=datasets or None,
        pipeline_tag=_PIPELINE_TAGS.get(model_type),
        model_name=name,
        eval_results=eval_results or None,
    )
    body = _body(name, model_type, config, training, history, entries, checksums, repo_id)
    return f"---\n{card_data.to_yaml()}\n---\n\n{body}"


# ---------------------------------------------------------------------------------- helpers
def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    value = json.loads(path.read_text())
    return value if isinstance(value, dict) else None


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_eval_results(root: Path) -> list[dict[str, Any]]:
    raw = _read_json(root / EVAL_RESULTS_NAME)
    if raw is None:
        return []
    if raw.get("format_version") != EVAL_RESULTS_VERSION:
        raise ValueError(
            f"{root / EVAL_RESULTS_NAME} has format_version {raw.get('format_version')!r}; "
            f"this version reads {EVAL_RESULTS_VERSION}. Upgrade robust-contrastive."
        )
    return list(raw.get("entries", []))


def _radius(norm: str, value: float) -> str:
    """8/255 for l-inf radii that are multiples of 1/255, else the number."""
    if norm == "linf" and value > 0 and abs(value * 255 - round(value * 255)) < 1e-6:
        return f"{round(value * 255)}/255"
    return f"{value:.5g}"


def _metrics(report: Mapping[str, Any]) -> list[tuple[str, float, dict[str, Any]]]:
    """(metric name, accuracy in [0, 1], attack settings) for the clean run and each threat."""
    n_images, seed = report["n_images"], report["seed"]
    out: list[tuple[str, float, dict[str, Any]]] = [
        ("clean accuracy", float(report["clean_accuracy"]), {"n_images": n_images})
    ]
    for r in report["results"]:
        attack = str(r["attack"])
        eps = _radius(r["norm"], r["eps"])
        args: dict[str, Any] = {
            "attack": attack,
            "threat_model": r["norm"],
            "eps": r["eps"],
            "n_images": r["n_images"],
            "seed": seed,
        }
        if attack.endswith("pgd"):
            args.update(
                step_size=r["alpha"], steps=r["steps"], protocol=r["protocol"], random_start=True
            )
            label = f"{'EOT-' if attack == 'eot-pgd' else ''}PGD-{r['steps']}"
            name = f"{label} {r['norm']} eps={eps} step={_radius(r['norm'], r['alpha'])}"
        else:
            version = "rand" if attack.endswith("rand") else "standard"
            args["version"] = version
            name = f"AutoAttack ({version}) {r['norm']} eps={eps}"
        if r.get("eot_samples", 1) > 1:
            args["eot_samples"] = r["eot_samples"]
        out.append((f"robust accuracy, {name}", float(r["accuracy"]), args))
    return out


_TRAINING_FIELDS: tuple[str, ...] = (
    "adversarial",
    "arch",
    "width",
    "epochs",
    "batch_size",
    "lr",
    "lars",
    "temperature",
    "eps",
    "alpha",
    "attack_steps",
    "attack_norm",
    "attack_loss",
    "reg_lambda",
    "regularizer_forward",
    "seed",
)


def _body(
    name: str,
    model_type: str,
    config: Mapping[str, Any],
    training: Mapping[str, Any] | None,
    history: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    checksums: Mapping[str, str],
    repo_id: str | None,
) -> str:
    class_name = _CLASS_NAMES.get(model_type, "RoCLEncoder")
    source = repo_id or "path/to/this/folder"
    method = "" if training is None else (" with RoCL" if training.get("adversarial") else "")
    lines = [
        f"# {name}",
        "",
        f"{_DESCRIPTIONS.get(model_type, 'A model')}{method}, saved by "
        "[robust-contrastive](https://github.com/robust-contrastive/robust-contrastive). "
        "Inputs are float images in [0, 1], shape (B, 3, H, W); normalisation, if any, is "
        "inside the model.",
        "",
        "```python",
        f"from robust_contrastive import {class_name}",
        "",
        f'model = {class_name}.from_pretrained("{source}")  # safetensors, eval mode',
        "```",
        "",
        "## Architecture",
        "",
        "| field | value |",
        "| --- | --- |",
        *(f"| {k} | {config[k]} |" for k in sorted(config) if k != "format_version"),
        "",
        "## Training",
        "",
    ]
    if training is None:
        lines.append("No training record (`train_config.json`) in this folder.")
    else:
        lines += ["| setting | value |", "| --- | --- |"]
        lines += [f"| {k} | {training[k]} |" for k in _TRAINING_FIELDS if k in training]
        if history:
            last = history[-1]
            minutes = sum(r.get("seconds", 0.0) for r in history) / 60
            loss = last.get("loss", float("nan"))
            lines += [
                "",
                f"Trained {last.get('epoch')} epochs; final loss {loss:.4f} ({minutes:.1f} min).",
            ]
    lines += ["", "## Evaluation", ""]
    if not entries:
        lines.append(
            "Not evaluated yet: attach a report with `robust-contrastive card FOLDER --report "
            "report.json` (made by `robust-contrastive evaluate`)."
        )
    for entry in entries:
        report = entry["report"]
        lines += [
            f"**{DATASET_NAMES.get(entry['dataset'], entry['dataset'])}**, {entry['split']}"
            + (f"; {entry['description']}" if entry["description"] else "")
            + f" ({report['n_images']} images, seed {report['seed']}).",
            "",
            "| evaluation | accuracy (%) | images | settings |",
            "| --- | --- | --- | --- |",
        ]
        for metric_name, accuracy, args in _metrics(report):
            settings = ", ".join(f"{k}={v}" for k, v in args.items() if k != "n_images")
            lines.append(
                f"| {metric_name} | {100 * accuracy:.2f} | {args['n_images']} | {settings or '-'} |"
            )
        lines += [f"\n> warning: {w}" for w in report.get("warnings", [])]
        lines.append("")
    lines += [
        "## Files",
        "",
        *(f"- `{file}`: SHA-256 `{digest}`" for file, digest in checksums.items()),
        "",
        "This card was generated by robust-contrastive from the folder's `config.json`, "
        "`train_config.json`, `metrics.jsonl` and `eval_results.json`.",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
