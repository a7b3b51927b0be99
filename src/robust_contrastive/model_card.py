"""Model cards: a ``README.md`` with Hugging Face YAML metadata, generated from a model folder.

A folder written by ``save_pretrained`` holds ``config.json`` and ``model.safetensors`` and may
hold, written by this library:

* ``train_config.json``: the [`TrainConfig`][robust_contrastive.TrainConfig] of the run that
  produced the weights (``RoCLTrainer`` writes it beside the encoder);
* ``metrics.jsonl``: one JSON line of training metrics per epoch (also the trainer's);
* ``eval_results.json``: evaluation reports attached with
  [`attach_evaluation`][robust_contrastive.model_card.attach_evaluation], each tied
  to the SHA-256 of the weights it evaluated;
* ``provenance.json`` (optional, see ``PROVENANCE_NAME``): the exact images of each split
  (training, model selection, evaluation), their overlap with the bundled samples, the linear
  probe's selection record and limitations specific to the model;
* ``comparison.json`` (optional, see ``COMPARISON_NAME``): tables comparing the model with
  others (a twin trained without attack, the paper's figures), each row with its source.

The card is a view of these files:
[`write_model_card`][robust_contrastive.model_card.write_model_card] regenerates ``README.md`` from
them and nothing in it is typed by hand. A result whose weights checksum no longer matches the
folder's weights (the folder was overwritten by another model) is left out, with a warning. The YAML
header follows the Hub's model-index format: each metric carries its attack settings (attack, norm,
eps, step, steps, number of images, seed) in ``args``; identical figures (the same clean accuracy
attached with several reports on the same images) appear once.

What a card never carries: an evaluation on a **single class** is refused (a constant classifier
scores 100 % on it); one on fewer than ``CARD_MIN_IMAGES`` (100) images is shown in the card
body under a warning and kept out of the ``model-index`` metadata, so that no leaderboard reads
it as a result.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, sha256_file
from ._names import MIN_EVAL_IMAGES
from .layout import (
    CARD_NAME as CARD_NAME,
)
from .layout import (
    COMPARISON_NAME as COMPARISON_NAME,
)
from .layout import (
    CONFIG_NAME,
    ENCODER_DIR,
    PROJECTOR_DIR,
    WEIGHTS_NAME,
)
from .layout import (
    EVAL_RESULTS_NAME as EVAL_RESULTS_NAME,
)
from .layout import (
    METRICS_NAME as METRICS_NAME,
)
from .layout import (
    PROVENANCE_NAME as PROVENANCE_NAME,
)
from .layout import (
    TRAIN_CONFIG_NAME as TRAIN_CONFIG_NAME,
)

logger = logging.getLogger(__name__)

EVAL_RESULTS_VERSION = 1
SIDE_FILES_VERSION = 1
CARD_MIN_IMAGES = MIN_EVAL_IMAGES
"""Evaluations on fewer images are flagged in the card and left out of its model-index."""
# Files whose bytes define a model's outputs: its own weights and, for classifiers, its encoder's.
WEIGHT_FILES: tuple[str, ...] = (WEIGHTS_NAME, f"{ENCODER_DIR}/{WEIGHTS_NAME}")

DATASET_NAMES: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "sample": "CIFAR-10 (the bundled 5,000-image sample)",
    "sample-held-out": "CIFAR-10 (the bundled 2,000-image held-out sample)",
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
_INTENDED_USE: dict[str, str] = {
    "rocl-encoder": (
        "Research on adversarially robust self-supervised representations: linear evaluation "
        "(`RobustLinearProbe`, clean or r-LE), robust fine-tuning, transfer, and attacks on the "
        "features (instance-wise attacks need the projector: `ProjectionHead.from_pretrained`)."
    ),
    "rocl-projection-head": (
        "Continuing contrastive training of its encoder, or computing instance-wise (contrastive) "
        "attacks against it. Not a feature extractor for downstream tasks: use the encoder's "
        "features."
    ),
    "rocl-linear-probe": (
        "Research on the robustness of self-supervised representations: a ready classifier for "
        "attack studies, robustness benchmarks at the stated scale and comparisons between "
        "encoders."
    ),
    "rocl-robust-classifier": (
        "Research on adversarial robustness: a ready classifier for attack studies and "
        "robustness benchmarks at the stated scale."
    ),
}
_LIMITATIONS: tuple[str, ...] = (
    "Robustness is measured only under the threats of the Evaluation section (white-box PGD "
    "and AutoAttack at the stated radii, on the stated images); larger radii, other threat "
    "models, adaptive attacks beyond these and distribution shift are untested. These are "
    "empirical accuracies under attack, not certified guarantees: do not rely on the model "
    "for security-critical decisions.",
    "Inputs are float images in [0, 1] of the training data's kind and size; other data needs "
    "a new probe or fine-tuning, and its robustness must be measured anew.",
)
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


def evaluation_problems(report: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """Whether a report may go on a model card: a refusal, and the flags it carries there.

    Args:
        report: a ``RobustnessReport.to_dict()``.

    Returns:
        ``(refusal, flags)``: ``refusal`` is a message when the report must not be attached
        (its images are all of one class, from its ``class_counts``), else None; ``flags`` are
        warnings the card shows above the figures (fewer than ``CARD_MIN_IMAGES`` images).
    """
    counts = [int(c) for c in report.get("class_counts") or []]
    present = [c for c, n in enumerate(counts) if n > 0]
    n_images = int(report["n_images"])
    fix = (
        "evaluate on held-out images of every class (e.g. load_sample(held_out=True): 2,000 "
        "CIFAR-10 images, 200 per class, or a stratified split from train_val_split) and attach "
        "that report"
    )
    refusal = None
    if len(present) == 1:
        refusal = (
            f"this report evaluated {n_images} images of a single class ({present[0]}): a "
            f"classifier that always predicts it scores 100 %, so a model card must not carry "
            f"these figures; {fix}."
        )
    flags = []
    if n_images < CARD_MIN_IMAGES:
        flags.append(
            f"only {n_images} evaluation images (fewer than {CARD_MIN_IMAGES}): each image "
            f"moves an accuracy by {100 / n_images:.1f} points. These figures are not reliable "
            "estimates and are left out of the model-index metadata; "
            f"{fix}."
        )
    return refusal, flags


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

    A report on images of a single class is refused; one on fewer than ``CARD_MIN_IMAGES``
    (100) images is attached but flagged in the card and kept out of its model-index metadata
    (see [`evaluation_problems`][robust_contrastive.model_card.evaluation_problems]).

    Args:
        folder: a ``save_pretrained`` folder (encoder, probe or classifier).
        report: a [`RobustnessReport`][robust_contrastive.evaluation.suite.RobustnessReport] or its
            ``to_dict()``.
        dataset: the dataset id of the evaluation images (``"cifar10"``).
        split: which images, e.g. ``"held-out 1,000 images of the training set"``.
        description: how the figures were obtained (e.g. ``"standard linear evaluation"``).

    Returns:
        The path of the regenerated ``README.md``.

    Raises:
        ValueError: the report evaluated other weights, evaluated a single class, or is not a
            report.
    """
    root = Path(folder)
    data = report.to_dict() if hasattr(report, "to_dict") else report
    data = dict(data) if isinstance(data, Mapping) else data
    if not isinstance(data, dict) or "clean_accuracy" not in data or "results" not in data:
        raise ValueError(
            "report must be a RobustnessReport (or its to_dict()) from evaluate_robustness."
        )
    refusal, flags = evaluation_problems(data)
    if refusal is not None:
        raise ValueError(f"not attached to {root}: {refusal}")
    for flag in flags:
        logger.warning("%s: %s", root, flag)
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
    """(Re)generate ``folder/README.md`` from the folder's files; returns its path.

    Raises:
        ValueError: ``eval_results.json`` holds an evaluation on a single class (see
            [`render_model_card`][robust_contrastive.model_card.render_model_card]).
    """
    root = Path(folder)
    return atomic_write_text(
        root / CARD_NAME, render_model_card(root, repo_id=repo_id, license=license)
    )


def render_model_card(
    folder: str | os.PathLike[str], *, repo_id: str | None = None, license: str = "mit"
) -> str:
    """The model card of a ``save_pretrained`` folder: YAML metadata and a markdown body.

    Sections: usage (loading by the registered name when the weights are registered, else by
    ``repo_id``), model details (architecture, input, feature dimension), intended use and
    limitations, training data (``provenance.json``), training settings, the linear probe's
    settings (probes), evaluation, comparison (``comparison.json``), files and citation.

    Args:
        folder: a folder with ``config.json`` and ``model.safetensors`` (see module docstring).
        repo_id: the Hub repo the card is for (used in the loading snippet and as model name).
        license: the license id of the weights.

    Returns:
        The full ``README.md`` text.

    Raises:
        ValueError: ``eval_results.json`` holds an evaluation on a single class (remove that
            entry: it was attached by an older version).
    """
    from huggingface_hub import EvalResult, ModelCardData

    root = Path(folder)
    config = json.loads((root / CONFIG_NAME).read_text())
    model_type = str(config.get("model_type", "unknown"))
    training = _read_json(root / TRAIN_CONFIG_NAME)
    history = _read_metrics(root / METRICS_NAME)
    if training is None and (root / "encoder").is_dir():  # a probe: its encoder's training
        training = _read_json(root / "encoder" / TRAIN_CONFIG_NAME)
        history = _read_metrics(root / "encoder" / METRICS_NAME)
    checksums = weights_checksums(root)
    provenance = _read_side_file(root / PROVENANCE_NAME)
    comparison = _read_side_file(root / COMPARISON_NAME)
    entries = []
    for entry in _read_eval_results(root):
        if entry["weights_sha256"] != checksums:
            logger.warning(
                "%s: an evaluation of other weights (%s) is left out of the model card",
                root / EVAL_RESULTS_NAME,
                entry["weights_sha256"],
            )
            continue
        refusal, _ = evaluation_problems(entry["report"])
        if refusal is not None:
            raise ValueError(
                f"{root / EVAL_RESULTS_NAME} holds an evaluation the card must not carry: "
                f"{refusal} Remove that entry from the file."
            )
        entries.append(entry)
    groups = _group_evaluations(entries)
    registered = _registered_name(model_type, checksums[WEIGHT_FILES[0]])
    if registered and model_type == "rocl-projection-head":
        title = f"{registered}/projector"  # loaded by the encoder's name
    else:
        title = registered or root.resolve().name
    name = repo_id or title
    eval_results = []
    seen: set[str] = set()
    for group in groups:
        if group["report"]["n_images"] < CARD_MIN_IMAGES:
            continue  # flagged in the body, never in the metadata
        for metric_name, accuracy, args in group["metrics"]:
            label = metric_name
            if label in seen:  # e.g. PGD-20 on 2,000 and on 1,000 images
                label = f"{metric_name} ({args['n_images']} images)"
            seen.add(label)
            eval_results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_type=group["dataset"],
                    dataset_name=DATASET_NAMES.get(group["dataset"], group["dataset"]),
                    dataset_split=group["split"],
                    metric_type="accuracy",
                    metric_name=label,
                    metric_value=round(100 * accuracy, 2),
                    metric_args=args,
                )
            )
    datasets = sorted({e["dataset"] for e in entries if not e["dataset"].startswith("sample")})
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
    body = _body(
        name=name,
        model_type=model_type,
        config=config,
        training=training,
        history=history,
        groups=groups,
        checksums=checksums,
        source=registered or repo_id,
        has_projector=(root / PROJECTOR_DIR / CONFIG_NAME).is_file(),
        provenance=provenance,
        comparison=comparison,
    )
    return f"---\n{card_data.to_yaml()}\n---\n\n{body}"


# ---------------------------------------------------------------------------------- helpers
def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    value = json.loads(path.read_text())
    return value if isinstance(value, dict) else None


def _read_side_file(path: Path) -> dict[str, Any] | None:
    value = _read_json(path)
    if value is not None and value.get("format_version") != SIDE_FILES_VERSION:
        raise ValueError(
            f"{path} has format_version {value.get('format_version')!r}; this version reads "
            f"{SIDE_FILES_VERSION}. Upgrade robust-contrastive."
        )
    return value


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


def _registered_name(model_type: str, digest: str) -> str | None:
    """The registry name whose weights are these (or whose projector is, for a projector).

    A bundled entry wins over one registered at run time with the same weights.
    """
    from .registry import list_pretrained

    key = "projector/model.safetensors" if model_type == "rocl-projection-head" else None
    for entry in sorted(list_pretrained(), key=lambda e: not e.bundled):
        if key is not None and entry.sha256.get(key) == digest:
            return entry.name
        if entry.model_type == model_type and entry.sha256.get(WEIGHT_FILES[0]) == digest:
            return entry.name
    return None


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


def _group_evaluations(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries measured on the same images merged into one table, identical figures once.

    Two reports are on the same images when dataset, split, description, number of images,
    seed and clean accuracy agree (``evaluate_robustness`` draws its subset from the seed).
    """
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for entry in entries:
        report = entry["report"]
        key = (
            entry["dataset"],
            entry["split"],
            entry["description"],
            report["n_images"],
            report["seed"],
            report["clean_accuracy"],
        )
        group = groups.setdefault(
            key,
            {
                "dataset": entry["dataset"],
                "split": entry["split"],
                "description": entry["description"],
                "report": report,
                "metrics": [],
                "warnings": [],
            },
        )
        for metric in _metrics(report):
            if metric not in group["metrics"]:
                group["metrics"].append(metric)
        for warning in report.get("warnings", []):
            if warning not in group["warnings"]:
                group["warnings"].append(warning)
    ordered = list(groups.values())
    ordered.sort(key=lambda g: -int(g["report"]["n_images"]))  # stable: ties keep their order
    return ordered


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
    "attack_source",
    "reg_lambda",
    "regularizer_forward",
    "image_size",
    "seed",
)
_PROBE_FIELDS: tuple[str, ...] = (
    "adversarial",
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "momentum",
    "weight_decay",
    "augment",
    "eps",
    "alpha",
    "attack_steps",
)


_RADII = {"eps": "eps", "step_size": "alpha"}  # args keys printed as k/255 under l-inf


def _value(key: str, value: Any, norm: str = "linf") -> str:
    """A setting for the card: l-inf radii as k/255."""
    if key in ("eps", "alpha") and isinstance(value, float):
        return _radius(norm, value)
    return str(value)


def _feature_dim(model_type: str, config: Mapping[str, Any]) -> int | None:
    fields = {k: v for k, v in config.items() if k not in ("model_type", "format_version")}
    if model_type == "rocl-encoder":
        from .models.encoder import RoCLEncoder

        try:
            return int(RoCLEncoder.from_config(fields).feature_dim)
        except (TypeError, ValueError):
            return None
    if "feature_dim" in config:
        return int(config["feature_dim"])
    return None


def _details(
    model_type: str,
    config: Mapping[str, Any],
    training: Mapping[str, Any] | None,
    provenance: Mapping[str, Any] | None,
    root_note: str,
) -> list[str]:
    class_name = _CLASS_NAMES.get(model_type, "RoCLEncoder")
    rows = [("model type", f"`{model_type}` (`{class_name}`)")]
    size = (provenance or {}).get("image_size")
    if size is None and training is not None and "image_size" in training:
        size = [training["image_size"], training["image_size"]]
    trained_at = f"; trained on {size[0]} x {size[1]} images" if size else ""
    if model_type == "rocl-projection-head":
        rows.append(("input", f"encoder features (B, {config.get('in_dim')})"))
        rows.append(
            (
                "output",
                f"(B, {config.get('out_dim')}) latents (hidden layer {config.get('hidden_dim')})",
            )
        )
    else:
        arch = training or {}
        if "arch" in config:
            rows.append(("architecture", f"{config['arch']}, width {config.get('width')}"))
        elif "arch" in arch:
            rows.append(("encoder architecture", f"{arch['arch']}, width {arch.get('width')}"))
        mean, std = config.get("mean"), config.get("std")
        norm = "none" if mean is None and std is None else f"in the model (mean {mean}, std {std})"
        rows.append(("input", f"(B, 3, H, W) float in [0, 1]{trained_at}; normalisation: {norm}"))
        dim = _feature_dim(model_type, config)
        if model_type == "rocl-encoder":
            rows.append(("output", f"(B, {dim}) features (feature dimension {dim})"))
        else:
            rows.append(
                (
                    "output",
                    f"(B, {config.get('num_classes', '?')}) logits"
                    + (f", a linear layer on {dim} encoder features" if dim else ""),
                )
            )
    settings = ", ".join(
        f"{k}={_value(k, config[k])}"
        for k in sorted(config)
        if k not in ("format_version", "model_type")
    )
    rows.append(("`config.json`", settings or "-"))
    lines = ["## Model details", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if root_note:
        lines += ["", root_note]
    return lines


def _table(columns: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _training_data(provenance: Mapping[str, Any] | None) -> list[str]:
    lines = ["## Training data", ""]
    if provenance is None:
        return [
            *lines,
            f"No data record (`{PROVENANCE_NAME}`) in this folder: the images that trained and "
            "selected this model are not documented here. Do not evaluate it on images you "
            "cannot show it never saw.",
        ]
    if provenance.get("dataset"):
        lines += [str(provenance["dataset"]), ""]
    splits = provenance.get("splits", [])
    if splits:
        samples: list[str] = []
        for split in splits:
            for sample in split.get("overlap", {}):
                if sample not in samples:
                    samples.append(sample)
        columns = ["split", "role", "images", "which images"]
        columns += [f"in {sample}" for sample in samples]
        rows = [
            [
                s["name"],
                s.get("role", ""),
                f"{s['images']:,}",
                s.get("which", ""),
                *(
                    f"{s['overlap'][sample]:,}" if sample in s.get("overlap", {}) else "-"
                    for sample in samples
                ),
            ]
            for s in splits
        ]
        lines += _table(columns, rows)
    lines += [f"\n{note}" for note in provenance.get("notes", [])]
    return lines


def _training(training: Mapping[str, Any] | None, history: list[dict[str, Any]]) -> list[str]:
    lines = ["## Training", ""]
    if training is None:
        return [*lines, "No training record (`train_config.json`) in this folder."]
    norm = str(training.get("attack_norm", "linf"))
    method = "RoCL (instance-wise adversarial)" if training.get("adversarial") else "SimCLR"
    lines += [f"Self-supervised, without labels: {method} contrastive learning.", ""]
    rows = [[k, _value(k, training[k], norm)] for k in _TRAINING_FIELDS if k in training]
    lines += _table(["setting", "value"], rows)
    if history:
        last = history[-1]
        minutes = sum(r.get("seconds", 0.0) for r in history) / 60
        loss = last.get("loss", float("nan"))
        lines += [
            "",
            f"Trained {last.get('epoch')} epochs; final loss {loss:.4f} ({minutes:.1f} min).",
        ]
    return lines


def _probe(config: Mapping[str, Any], provenance: Mapping[str, Any] | None) -> list[str]:
    kind = "r-LE (robust linear evaluation, eq. 7)" if config.get("adversarial") else "clean LE"
    lines = ["## Linear probe", "", f"A linear layer on the frozen encoder, trained by {kind}."]
    lines.append("")
    attack_fields = ("eps", "alpha", "attack_steps")  # r-LE's attack: shown for r-LE only
    rows = [
        [k, _value(k, config[k])]
        for k in _PROBE_FIELDS
        if k in config and (config.get("adversarial") or k not in attack_fields)
    ]
    for key, value in ((provenance or {}).get("probe") or {}).items():
        rows.append([key, value])
    return lines + _table(["setting", "value"], rows)


def _evaluation(groups: list[dict[str, Any]]) -> list[str]:
    lines = ["## Evaluation", ""]
    if not groups:
        return [
            *lines,
            "Not evaluated yet: attach a report with `robust-contrastive card FOLDER --report "
            "report.json` (made by `robust-contrastive evaluate`).",
        ]
    lines += [
        "Accuracy (%) on the images named above each table; eps and step are l-inf radii in "
        "[0, 1] pixel units (8/255) or l2 / l1 radii.",
        "",
    ]
    for group in groups:
        report = group["report"]
        dataset = DATASET_NAMES.get(group["dataset"], group["dataset"])
        description = f"; {group['description']}" if group["description"] else ""
        lines.append(
            f"**{dataset}**, {group['split']}{description} "
            f"(measured on {report['n_images']} of them: where that is fewer than all, a random "
            f"subset drawn with seed {report['seed']})."
        )
        counts = [int(c) for c in report.get("class_counts") or []]
        if counts:
            present = sum(1 for c in counts if c)
            low, high = min(c for c in counts if c), max(counts)
            spread = f"{low}" if low == high else f"{low}-{high}"
            lines[-1] += f" Images per class: {spread}, {present} of {len(counts)} classes."
        lines.append("")
        _, flags = evaluation_problems(report)
        lines += [f"> **Warning:** {flag}\n" for flag in flags]
        rows = []
        for metric_name, accuracy, args in group["metrics"]:
            norm = str(args.get("threat_model", "linf"))
            shown = {k: v for k, v in args.items() if k not in ("n_images", "threat_model")}
            settings = ", ".join(
                f"{k}={_value(_RADII.get(k, k), v, norm)}" for k, v in shown.items()
            )
            rows.append([metric_name, f"{100 * accuracy:.2f}", args["n_images"], settings or "-"])
        lines += _table(["evaluation", "accuracy (%)", "images", "settings"], rows)
        lines += [f"\n> warning: {w}" for w in group["warnings"]]
        lines.append("")
    return lines[:-1]


def _comparison(comparison: Mapping[str, Any] | None) -> list[str]:
    if not comparison or not comparison.get("tables"):
        return []
    lines = ["## Comparison", ""]
    for table in comparison["tables"]:
        if table.get("title"):
            lines += [f"**{table['title']}**", ""]
        lines += _table(list(table["columns"]), [list(r) for r in table["rows"]])
        lines += [f"\n{note}" for note in table.get("notes", [])]
        lines.append("")
    return lines[:-1]


def _usage(
    model_type: str, config: Mapping[str, Any], source: str | None, has_projector: bool
) -> list[str]:
    class_name = _CLASS_NAMES.get(model_type, "RoCLEncoder")
    target = f'"{source}"' if source else '"path/to/this/folder"'
    where = (
        "registered name (bundled with the package or pinned on the Hub, weights checksum-verified)"
        if source and "/" not in source
        else "Hub repo id"
        if source
        else "folder holding this card"
    )
    if model_type == "rocl-encoder":
        lines = [
            "from robust_contrastive import ProjectionHead, RoCLEncoder"
            if has_projector
            else "from robust_contrastive import RoCLEncoder",
            "",
            f"encoder = RoCLEncoder.from_pretrained({target})  # eval mode",
            "features = encoder(images)  # images (B, 3, H, W) float in [0, 1]",
        ]
        if has_projector:
            lines += [
                f"projector = ProjectionHead.from_pretrained({target})  # from projector/",
                "z = projector(features)  # the latent of the contrastive loss and its attacks",
            ]
    elif model_type == "rocl-projection-head":
        lines = [
            "from robust_contrastive import ProjectionHead",
            "",
            f"projector = ProjectionHead.from_pretrained({target})  # eval mode",
            f"z = projector(features)  # (B, {config.get('in_dim')}) -> "
            f"(B, {config.get('out_dim')})",
        ]
    else:
        lines = [
            f"from robust_contrastive import {class_name}",
            "",
            f"model = {class_name}.from_pretrained({target})  # eval mode",
            "logits = model(images)  # images (B, 3, H, W) float in [0, 1]",
        ]
    if model_type == "rocl-projection-head" and source and "/" not in source:
        where = f"encoder's {where}"
    return ["## Usage", "", f"Load it by its {where}:", "", "```python", *lines, "```"]


def _body(
    *,
    name: str,
    model_type: str,
    config: Mapping[str, Any],
    training: Mapping[str, Any] | None,
    history: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    checksums: Mapping[str, str],
    source: str | None,
    has_projector: bool,
    provenance: Mapping[str, Any] | None,
    comparison: Mapping[str, Any] | None,
) -> str:
    method = ""
    if training is not None:
        algorithm = "RoCL" if training.get("adversarial") else "SimCLR"
        method = f" with {algorithm}" if model_type == "rocl-encoder" else f" ({algorithm} encoder)"
    lines = [
        f"# {name}",
        "",
        f"{_DESCRIPTIONS.get(model_type, 'A model')}{method}, saved by "
        "[robust-contrastive](https://github.com/robust-contrastive/robust-contrastive).",
        "",
    ]
    small = [g for g in groups if g["report"]["n_images"] < CARD_MIN_IMAGES]
    if small:
        sizes = ", ".join(str(g["report"]["n_images"]) for g in small)
        lines += [
            f"> **Warning:** {len(small)} evaluation(s) of this card ran on fewer than "
            f"{CARD_MIN_IMAGES} images ({sizes}): their figures are not reliable (see "
            "Evaluation) and are not in the model-index metadata.",
            "",
        ]
    lines += _usage(model_type, config, source, has_projector)
    lines += [""]
    training_note = ""
    if training is not None and model_type != "rocl-encoder":
        training_note = "The Training section describes the encoder's self-supervised training."
    lines += _details(model_type, config, training, provenance, training_note)
    lines += ["", "## Intended use and limitations", ""]
    lines += [f"Intended use: {_INTENDED_USE.get(model_type, _INTENDED_USE['rocl-encoder'])}", ""]
    lines += ["Limitations:", ""]
    lines += [f"- {item}" for item in (*(provenance or {}).get("limitations", []), *_LIMITATIONS)]
    lines += [""]
    lines += _training_data(provenance)
    lines += [""]
    lines += _training(training, history)
    if model_type == "rocl-linear-probe":
        lines += [""]
        lines += _probe(config, provenance)
    lines += [""]
    lines += _evaluation(groups)
    comparison_lines = _comparison(comparison)
    if comparison_lines:
        lines += ["", *comparison_lines]
    lines += [
        "",
        "## Files",
        "",
        *(f"- `{file}`: SHA-256 `{digest}`" for file, digest in checksums.items()),
        "",
        "This card was generated by robust-contrastive from the folder's files (`config.json`, "
        f"`{TRAIN_CONFIG_NAME}`, `{METRICS_NAME}`, `{EVAL_RESULTS_NAME}`, `{PROVENANCE_NAME}`, "
        f"`{COMPARISON_NAME}`, where present); regenerate it with "
        "`robust-contrastive card FOLDER`.",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
