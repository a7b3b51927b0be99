"""Model cards: a ``README.md`` with Hugging Face YAML metadata, generated from a model folder.

The card is a view of the files of a ``save_pretrained`` or run folder (named and described in
``robust_contrastive.layout``): [`write_model_card`][robust_contrastive.model_card.write_model_card]
regenerates ``README.md`` from them and nothing in it is typed by hand. Evaluation reports are
attached with [`attach_evaluation`][robust_contrastive.model_card.attach_evaluation], each tied to
the SHA-256 of the weights it evaluated; one whose checksum no longer matches the folder's weights
(the folder was overwritten by another model) is left out, with a warning. The YAML header follows
the Hub's model-index format: each metric carries its attack settings (attack, norm, eps, step,
steps, number of images, seed) in ``args``; identical figures (the same clean accuracy attached
with several reports on the same images) appear once.

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
from .layout import CARD_NAME as CARD_NAME
from .layout import COMPARISON_NAME as COMPARISON_NAME
from .layout import CONFIG_NAME, ENCODER_DIR, FINETUNE_CONFIG_NAME, PROJECTOR_DIR, WEIGHTS_NAME
from .layout import EVAL_RESULTS_NAME as EVAL_RESULTS_NAME
from .layout import METRICS_NAME as METRICS_NAME
from .layout import PROVENANCE_NAME as PROVENANCE_NAME
from .layout import TRAIN_CONFIG_NAME as TRAIN_CONFIG_NAME

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
# model_type -> (its class, the Hub's pipeline tag); an unknown one reads as an encoder, untagged
_CLASSES: dict[str, tuple[str, str | None]] = {
    "rocl-encoder": ("RoCLEncoder", "image-feature-extraction"),
    "rocl-projection-head": ("ProjectionHead", "feature-extraction"),
    "rocl-linear-probe": ("RobustLinearProbe", "image-classification"),
    "rocl-robust-classifier": ("RobustClassifier", "image-classification"),
}
_UNKNOWN_CLASS = ("RoCLEncoder", None)
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
            f"estimates and are left out of the model-index metadata; {fix}."
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
    card = render_model_card(folder, repo_id=repo_id, license=license)
    return atomic_write_text(Path(folder) / CARD_NAME, card)


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
    from huggingface_hub import ModelCardData

    root = Path(folder)
    config = json.loads((root / CONFIG_NAME).read_text())
    model_type = str(config.get("model_type", "unknown"))
    training = _read_json(root / TRAIN_CONFIG_NAME)
    history = _read_metrics(root / METRICS_NAME)
    finetuning = _read_json(root / FINETUNE_CONFIG_NAME)
    finetune_history: list[dict[str, Any]] = []
    if finetuning is not None:  # the folder's metrics are the fine-tuning's
        finetune_history, history = history, []
    if training is None and (root / ENCODER_DIR).is_dir():  # its encoder's training
        training = _read_json(root / ENCODER_DIR / TRAIN_CONFIG_NAME)
        history = _read_metrics(root / ENCODER_DIR / METRICS_NAME)
    checksums = weights_checksums(root)
    provenance = _read_json(root / PROVENANCE_NAME, SIDE_FILES_VERSION)
    comparison = _read_json(root / COMPARISON_NAME, SIDE_FILES_VERSION)
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
    datasets = sorted({e["dataset"] for e in entries if not e["dataset"].startswith("sample")})
    tags = ["robust-contrastive", "adversarial-robustness", "pytorch", "safetensors"]
    if training is not None:
        tags.append("rocl" if training.get("adversarial", True) else "simclr")
        tags += ["self-supervised-learning", "contrastive-learning"]
    if finetuning is not None:
        tags.append("adversarial-training")
    card_data = ModelCardData(
        library_name="robust-contrastive",
        license=license,
        tags=tags,
        datasets=datasets or None,
        pipeline_tag=_CLASSES.get(model_type, _UNKNOWN_CLASS)[1],
        model_name=name,
        eval_results=_model_index(groups) or None,
    )
    encoder_config = _read_json(root / ENCODER_DIR / CONFIG_NAME)
    has_projector = (root / PROJECTOR_DIR / CONFIG_NAME).is_file()
    training_note = ""
    if training is not None and model_type != "rocl-encoder" and finetuning is None:
        training_note = "The Training section describes the encoder's self-supervised training."
    sections = [  # separated by a blank line; an empty one is left out
        _title(name, model_type, training, finetuning, groups),
        _usage(model_type, config, registered or repo_id, has_projector),
        _details(model_type, config, training or encoder_config, provenance, training_note),
        _intended_use(model_type, provenance),
        _training_data(provenance),
        _training(training, history)
        if finetuning is None
        else _finetuning(finetuning, finetune_history, training, history, encoder_config),
        _probe(config, provenance) if model_type == "rocl-linear-probe" else [],
        _evaluation(groups),
        _comparison(comparison),
        _files(checksums, finetuning),
    ]
    body = "\n\n".join("\n".join(lines) for lines in sections if lines)
    return f"---\n{card_data.to_yaml()}\n---\n\n{body}\n"


# ---------------------------------------------------------------------------------- helpers
def _read_json(path: Path, version: int | None = None) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None; raises if its ``format_version`` is not ``version``."""
    if not path.is_file():
        return None
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        return None
    if version is not None and value.get("format_version") != version:
        raise ValueError(
            f"{path} has format_version {value.get('format_version')!r}; this version reads "
            f"{version}. Upgrade robust-contrastive."
        )
    return value


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_eval_results(root: Path) -> list[dict[str, Any]]:
    raw = _read_json(root / EVAL_RESULTS_NAME, EVAL_RESULTS_VERSION)
    return [] if raw is None else list(raw.get("entries", []))


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
        args: dict[str, Any] = dict(
            attack=attack, threat_model=r["norm"], eps=r["eps"], n_images=r["n_images"], seed=seed
        )
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
        where = {k: entry[k] for k in ("dataset", "split", "description")}
        key = (*where.values(), report["n_images"], report["seed"], report["clean_accuracy"])
        group = groups.setdefault(key, {**where, "report": report, "metrics": [], "warnings": []})
        for metric in _metrics(report):
            if metric not in group["metrics"]:
                group["metrics"].append(metric)
        for warning in report.get("warnings", []):
            if warning not in group["warnings"]:
                group["warnings"].append(warning)
    # the most images first (sorted is stable: ties keep their order)
    return sorted(groups.values(), key=lambda g: -int(g["report"]["n_images"]))


def _model_index(groups: list[dict[str, Any]]) -> list[Any]:
    """The ``EvalResult`` of each figure of the groups on at least ``CARD_MIN_IMAGES`` images."""
    from huggingface_hub import EvalResult

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
    return eval_results


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


_FINETUNE_HIDDEN = ("device", "progress", "checkpoint_every")  # no effect on the weights
_FINETUNE_ONLY = {  # settings that matter for one method only, or with validation data
    **dict.fromkeys(("ss_weight", "temperature", "ss_eps", "ss_alpha", "ss_attack_steps"), "at+ss"),
    "trades_beta": "trades",
    "val_attack_steps": "val",
}
_FINETUNE_METHODS: dict[str, str] = {
    "at": "PGD adversarial training (AT, Madry et al.): the cross-entropy on PGD examples",
    "trades": "TRADES (Zhang et al.): the clean cross-entropy plus trades_beta times the KL "
    "divergence of the outputs on TRADES' adversarial examples",
    "at+ss": "AT+SS (RoCL's Table 1): adversarial training plus ss_weight times RoCL's robust "
    "contrastive loss through the projector",
}
_RADII = {"eps": "eps", "step_size": "alpha"}  # args keys printed as k/255 under l-inf


def _value(key: str, value: Any, norm: str = "linf") -> str:
    """A setting for the card: l-inf radii as k/255."""
    if key in ("eps", "alpha", "ss_eps", "ss_alpha") and isinstance(value, float):
        return _radius("linf" if key.startswith("ss_") else norm, value)
    return str(value)


def _feature_dim(model_type: str, config: Mapping[str, Any]) -> int | None:
    if model_type != "rocl-encoder":
        return int(config["feature_dim"]) if "feature_dim" in config else None
    from .models.encoder import RoCLEncoder

    fields = {k: v for k, v in config.items() if k not in ("model_type", "format_version")}
    try:
        return int(RoCLEncoder.from_config(fields).feature_dim)
    except (TypeError, ValueError):
        return None


def _details(
    model_type: str,
    config: Mapping[str, Any],
    training: Mapping[str, Any] | None,
    provenance: Mapping[str, Any] | None,
    root_note: str,
) -> list[str]:
    class_name = _CLASSES.get(model_type, _UNKNOWN_CLASS)[0]
    rows = [("model type", f"`{model_type}` (`{class_name}`)")]
    size = (provenance or {}).get("image_size")
    if size is None and training is not None and "image_size" in training:
        size = [training["image_size"], training["image_size"]]
    trained_at = f"; trained on {size[0]} x {size[1]} images" if size else ""
    if model_type == "rocl-projection-head":
        latents = f"(B, {config.get('out_dim')}) latents (hidden layer {config.get('hidden_dim')})"
        rows += [("input", f"encoder features (B, {config.get('in_dim')})"), ("output", latents)]
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
            output = f"(B, {dim}) features (feature dimension {dim})"
        else:
            output = f"(B, {config.get('num_classes', '?')}) logits"
            output += f", a linear layer on {dim} encoder features" if dim else ""
        rows.append(("output", output))
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
        samples = list(dict.fromkeys(name for split in splits for name in split.get("overlap", {})))
        columns = ["split", "role", "images", "which images"]
        columns += [f"in {sample}" for sample in samples]
        rows = []
        for split in splits:
            overlap = split.get("overlap", {})
            cells = [f"{overlap[sample]:,}" if sample in overlap else "-" for sample in samples]
            which = split.get("which", "")
            rows.append(
                [split["name"], split.get("role", ""), f"{split['images']:,}", which, *cells]
            )
        lines += _table(columns, rows)
    lines += [f"\n{note}" for note in provenance.get("notes", [])]
    return lines


def _training(
    training: Mapping[str, Any] | None,
    history: list[dict[str, Any]],
    heading: str = "## Training",
) -> list[str]:
    lines = [heading, ""]
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


def _finetuning(
    finetuning: Mapping[str, Any],
    history: list[dict[str, Any]],
    training: Mapping[str, Any] | None,
    encoder_history: list[dict[str, Any]],
    encoder_config: Mapping[str, Any] | None,
) -> list[str]:
    """The Training section of a fine-tuned classifier: its fine-tuning record and metrics (the
    metric names of this version, or of earlier ones), then its encoder's training if known."""
    method = str(finetuning.get("method"))
    lines = [
        "## Training",
        "",
        "Supervised adversarial fine-tuning, with the labels: the encoder and a new linear head "
        f"trained together by {_FINETUNE_METHODS.get(method, method)}.",
        "",
    ]
    if training is not None:
        algorithm = "RoCL" if training.get("adversarial") else "SimCLR"
        lines += [f"Started from a {algorithm} encoder: its training is described below.", ""]
    else:
        arch = (encoder_config or {}).get("arch")
        encoder = f"a {arch} encoder" if arch else "an encoder"
        lines += [
            f"Started from {encoder} whose training is not recorded in this folder "
            f"(`{ENCODER_DIR}/{TRAIN_CONFIG_NAME}`): a pretrained encoder, or a random one for "
            "the from-scratch baseline.",
            "",
        ]
    relevant = {method, "val"} if any("val_adv_acc" in r for r in history) else {method}
    norm = str(finetuning.get("attack_norm", "linf"))
    rows = [
        [k, _value(k, v, norm)]
        for k, v in finetuning.items()
        if k not in _FINETUNE_HIDDEN and _FINETUNE_ONLY.get(k, method) in relevant
    ]
    lines += _table(["setting", "value"], rows)
    if history:
        last = history[-1]
        minutes = sum(r.get("seconds", 0.0) for r in history) / 60
        clean = last.get("train_clean_acc", last.get("clean_acc"))  # older runs: clean_acc
        adversarial = last.get("train_adv_acc", last.get("adv_acc"))
        summary = (
            f"Fine-tuned {last.get('epoch')} epochs ({minutes:.1f} min); last epoch: loss "
            f"{last.get('loss', float('nan')):.4f}"
        )
        if clean is not None and adversarial is not None:
            summary += (
                f", training accuracy {100 * clean:.1f} % clean and {100 * adversarial:.1f} % "
                "under the training attack"
            )
        kept = [r for r in history if r.get("best")]
        if kept:
            summary += (
                f". Kept the weights of epoch {kept[-1]['epoch']}, the best validation "
                f"PGD-{finetuning.get('val_attack_steps')} accuracy: "
                f"{100 * kept[-1]['val_adv_acc']:.1f} % ({100 * kept[-1]['val_clean_acc']:.1f} % "
                "clean)"
            )
        lines += ["", f"{summary}."]
    if training is not None:
        lines += ["", *_training(training, encoder_history, "### The encoder's training")]
    return lines


def _probe(config: Mapping[str, Any], provenance: Mapping[str, Any] | None) -> list[str]:
    kind = "r-LE (robust linear evaluation, eq. 7)" if config.get("adversarial") else "clean LE"
    lines = ["## Linear probe", "", f"A linear layer on the frozen encoder, trained by {kind}.", ""]
    attack_fields = ("eps", "alpha", "attack_steps")  # r-LE's attack: shown for r-LE only
    rows = [
        [k, _value(k, config[k])]
        for k in _PROBE_FIELDS
        if k in config and (config.get("adversarial") or k not in attack_fields)
    ]
    rows += [[key, value] for key, value in ((provenance or {}).get("probe") or {}).items()]
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
    target = f'"{source}"' if source else '"path/to/this/folder"'
    where = (
        "registered name (bundled with the package or pinned on the Hub, weights checksum-verified)"
        if source and "/" not in source
        else "Hub repo id"
        if source
        else "folder holding this card"
    )
    if model_type == "rocl-encoder":
        names = "ProjectionHead, RoCLEncoder" if has_projector else "RoCLEncoder"
        code = [
            f"encoder = RoCLEncoder.from_pretrained({target})  # eval mode",
            "features = encoder(images)  # images (B, 3, H, W) float in [0, 1]",
        ]
        if has_projector:
            code += [
                f"projector = ProjectionHead.from_pretrained({target})  # from projector/",
                "z = projector(features)  # the latent of the contrastive loss and its attacks",
            ]
    elif model_type == "rocl-projection-head":
        names = "ProjectionHead"
        code = [
            f"projector = ProjectionHead.from_pretrained({target})  # eval mode",
            f"z = projector(features)  # (B, {config.get('in_dim')}) -> "
            f"(B, {config.get('out_dim')})",
        ]
        if source and "/" not in source:
            where = f"encoder's {where}"
    else:
        names = _CLASSES.get(model_type, _UNKNOWN_CLASS)[0]
        code = [
            f"model = {names}.from_pretrained({target})  # eval mode",
            "logits = model(images)  # images (B, 3, H, W) float in [0, 1]",
        ]
    code = [f"from robust_contrastive import {names}", "", *code]
    return ["## Usage", "", f"Load it by its {where}:", "", "```python", *code, "```"]


def _title(
    name: str,
    model_type: str,
    training: Mapping[str, Any] | None,
    finetuning: Mapping[str, Any] | None,
    groups: list[dict[str, Any]],
) -> list[str]:
    method = ""
    if training is not None:
        algorithm = "RoCL" if training.get("adversarial") else "SimCLR"
        method = f" with {algorithm}" if model_type == "rocl-encoder" else f" ({algorithm} encoder)"
    if finetuning is not None:
        method = f" by {str(finetuning.get('method')).upper()}{method}"
    lines = [
        f"# {name}",
        "",
        f"{_DESCRIPTIONS.get(model_type, 'A model')}{method}, saved by "
        "[robust-contrastive](https://github.com/robust-contrastive/robust-contrastive).",
    ]
    small = [g for g in groups if g["report"]["n_images"] < CARD_MIN_IMAGES]
    if small:
        sizes = ", ".join(str(g["report"]["n_images"]) for g in small)
        lines += [
            "",
            f"> **Warning:** {len(small)} evaluation(s) of this card ran on fewer than "
            f"{CARD_MIN_IMAGES} images ({sizes}): their figures are not reliable (see "
            "Evaluation) and are not in the model-index metadata.",
        ]
    return lines


def _intended_use(model_type: str, provenance: Mapping[str, Any] | None) -> list[str]:
    limitations = (*(provenance or {}).get("limitations", []), *_LIMITATIONS)
    return [
        "## Intended use and limitations",
        "",
        f"Intended use: {_INTENDED_USE.get(model_type, _INTENDED_USE['rocl-encoder'])}",
        "",
        "Limitations:",
        "",
        *(f"- {item}" for item in limitations),
    ]


def _files(checksums: Mapping[str, str], finetuning: Mapping[str, Any] | None) -> list[str]:
    """The Files and Citation sections."""
    records = [TRAIN_CONFIG_NAME, METRICS_NAME, EVAL_RESULTS_NAME, PROVENANCE_NAME, COMPARISON_NAME]
    if finetuning is not None:
        records.insert(1, FINETUNE_CONFIG_NAME)
    return [
        "## Files",
        "",
        *(f"- `{file}`: SHA-256 `{digest}`" for file, digest in checksums.items()),
        "",
        "This card was generated by robust-contrastive from the folder's files (`config.json`, "
        + "".join(f"`{name}`, " for name in records)
        + "where present); regenerate it with "
        "`robust-contrastive card FOLDER`.",
        "",
        "## Citation",
        "",
        "```bibtex",
        _CITATION,
        "```",
    ]
