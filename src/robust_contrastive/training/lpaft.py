"""DynACL++'s post-processing (Luo et al., ICLR 2023): pseudo-labels by k-means, a linear probe
on them, then adversarial full fine-tuning (LP-AFT), without a single true label.

Any encoder can be post-processed: a DynACL one, RoCL's, a converted checkpoint. The stages
reuse the library's pieces: [`RobustLinearProbe`][robust_contrastive.RobustLinearProbe] for the
probe and [`finetune`][robust_contrastive.finetune] (TRADES) for the fine-tuning, each on the
shared [`TrainingLoop`][robust_contrastive.training.loop.TrainingLoop]. Defaults follow the
official code (github.com/PKU-ML/DYNACL: ``assign_label.py``, ``LPAFT.py``, ``utils.py``); see
the DynACL++ page of the documentation for the equations and where the library departs from it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write_text
from ..augment import random_crop_flip
from ..data import ImageDataset
from ..layout import CHECKPOINT_DIR, CONFIG_NAME, LAST_CHECKPOINT, WEIGHTS_NAME
from ..models import RoCLEncoder
from ..models.classifier import RobustClassifier
from ..validation import check_training_images
from .loop import FitResult
from .lpaft_config import KMEANS_INITS, LPAFT_CONFIG_NAME, RESUMABLE_CHANGES, LPAFTConfig
from .trainer import resolve_device

__all__ = [
    "FINETUNE_DIR",
    "PROBE_DIR",
    "PSEUDO_LABELS_NAME",
    "LPAFTConfig",
    "LPAFTResult",
    "kmeans",
    "pseudo_labels",
    "train_lpaft",
]

logger = logging.getLogger(__name__)

PSEUDO_LABELS_NAME = "pseudo_labels.json"  # stage 1: the pseudo-labels and cluster sizes
PROBE_DIR = "probe"  # stage 2: the linear probe on the pseudo-labels (save_pretrained layout)
PROBE_HISTORY_NAME = "probe_history.json"  # in PROBE_DIR, written last: stage 2 is done
FINETUNE_DIR = "finetune"  # stage 3: finetune's run folder (checkpoints, metrics, classifier)
# What marks each stage done, in order; a stage that is redone deletes the later ones' markers.
_STAGE_MARKERS: tuple[str, ...] = (
    PSEUDO_LABELS_NAME,
    f"{PROBE_DIR}/{PROBE_HISTORY_NAME}",
    f"{FINETUNE_DIR}/{CHECKPOINT_DIR}/{LAST_CHECKPOINT}",
)
_FORMAT_VERSION = 1


# ------------------------------------------------------------------------------ k-means
def kmeans(
    features: torch.Tensor,
    k: int,
    *,
    generator: torch.Generator | None = None,
    iterations: int = 1000,
    tol: float = 1e-4,
    init: str = "random",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with squared Euclidean distances, as ``kmeans_pytorch.kmeans`` (the
    package the official ``assign_label.py`` calls) computes it.

    Start: ``init="random"`` takes the features of k distinct rows drawn uniformly (the
    official ``initialize``); ``"k-means++"`` draws the first centre uniformly, then each next
    one with probability proportional to the squared distance to the nearest centre chosen.
    Each iteration assigns every row to its nearest centre (the lowest index among ties), then
    moves each centre to the mean of its rows (an empty cluster takes one row drawn uniformly,
    as the official code); it stops once ``(sum_c ||c_new - c_old||)^2 < tol`` or after
    ``iterations`` iterations (a warning is logged then).

    Args:
        features: (N, D) float, N >= k; on any device (the computation stays there).
        k: the number of clusters, >= 1.
        generator: the draws' generator (any device; draws are moved to ``features``' device);
            the same seed gives the same result on the same device. None: the global one.
        iterations: the most Lloyd iterations, >= 1.
        tol: the stopping threshold on the squared total centre shift, > 0.
        init: ``"random"`` or ``"k-means++"``.

    Returns:
        ``(labels, centroids)``: labels (N,) int64 in [0, k), the assignment of the last
        iteration; centroids (k, D) the means of those assignments (float32, or the features'
        float dtype), both on ``features``' device.

    Raises:
        TypeError / ValueError: features that are not a finite 2-D float tensor with at least k
            rows, or a bad k, iterations, tol or init.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise TypeError(
            f"features must be a 2-D tensor (N, D), got "
            f"{tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)}."
        )
    for name, value, low in (("k", k, 1), ("iterations", iterations, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a number > 0, got {tol!r}.")
    if init not in KMEANS_INITS:
        raise ValueError(f"init must be one of {list(KMEANS_INITS)}, got {init!r}.")
    n = features.shape[0]
    if n < k:
        raise ValueError(f"k-means into {k} clusters needs at least {k} rows, got {n}.")
    x = features if features.is_floating_point() else features.float()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features hold NaN or infinite values: check the encoder's outputs.")
    centres = _initial_centres(x, k, init, generator)  # (k, D)
    squared_norms = x.pow(2).sum(dim=1, keepdim=True)  # (N, 1)
    labels = torch.zeros(n, dtype=torch.long, device=x.device)
    for iteration in range(1, iterations + 1):
        labels = _nearest(x, squared_norms, centres)  # (N,)
        previous = centres
        sums = torch.zeros_like(centres).index_add_(0, labels, x)  # (k, D)
        counts = torch.bincount(labels, minlength=k)  # (k,)
        centres = sums / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
        for empty in (counts == 0).nonzero().flatten().tolist():  # kmeans_pytorch issue #16
            row = int(torch.randint(n, (1,), generator=generator, device=_device_of(generator)))
            centres[empty] = x[row]
        shift = (centres - previous).pow(2).sum(dim=1).sqrt().sum()
        if float(shift) ** 2 < tol:
            logger.debug("k-means converged after %d iterations", iteration)
            break
    else:
        logger.warning(
            "k-means stopped after %d iterations without converging (squared shift %.3g >= tol "
            "%.3g); raise kmeans_iterations to continue",
            iterations,
            float(shift) ** 2,
            tol,
        )
    return labels, centres


def _device_of(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def _nearest(x: torch.Tensor, squared_norms: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre of every row, (N,): argmin_c ||x - c||^2 (expanded)."""
    distances = squared_norms - 2 * x @ centres.T + centres.pow(2).sum(dim=1)  # (N, k)
    return distances.argmin(dim=1)


def _initial_centres(
    x: torch.Tensor, k: int, init: str, generator: torch.Generator | None
) -> torch.Tensor:
    """The starting centres, (k, D): k distinct rows ("random"), or k-means++'s D^2 draws."""
    n, device = x.shape[0], _device_of(generator)
    if init == "random":
        rows = torch.randperm(n, generator=generator, device=device)[:k].to(x.device)
        return x[rows].clone()
    first = int(torch.randint(n, (1,), generator=generator, device=device))
    chosen = [first]
    closest = (x - x[first]).pow(2).sum(dim=1)  # (N,) squared distance to the nearest centre
    for _ in range(1, k):
        weights = closest.clamp(min=0).double()
        if not float(weights.sum()) > 0:  # fewer distinct rows than k: take any unused row
            weights = torch.ones(n, dtype=torch.float64, device=x.device)
            weights[chosen] = 0
        row = int(torch.multinomial(weights.to(device), 1, generator=generator))
        chosen.append(row)
        closest = torch.minimum(closest, (x - x[row]).pow(2).sum(dim=1))
    return x[torch.tensor(chosen, device=x.device)].clone()


@torch.no_grad()
def _features(encoder: RoCLEncoder, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The encoder's features of un-augmented images, (N, F), eval mode, on its device."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            chunks.append(encoder(batch.float() / 255.0 if batch.dtype == torch.uint8 else batch))
        return torch.cat(chunks)
    finally:
        encoder.train(was_training)


def pseudo_labels(
    encoder: RoCLEncoder,
    images: ImageDataset | torch.Tensor,
    k: int = 10,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 512,
    iterations: int = 1000,
    tol: float = 1e-4,
    init: str = "random",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-labels of images: [`kmeans`][robust_contrastive.training.lpaft.kmeans] on the
    encoder's features (eval mode, un-augmented images, no normalisation of the features), as
    the official ``assign_label.py``. No label is read: an ImageDataset's labels are ignored.

    Args:
        encoder: the encoder, (B, 3, H, W) in [0, 1] -> (B, F); run in eval mode on its device
            (its mode is restored).
        images: an [`ImageDataset`][robust_contrastive.ImageDataset] or (N, 3, H, W) uint8 /
            float in [0, 1].
        k: the number of clusters (10 for CIFAR-10).
        generator: the k-means draws' generator; the same seed gives the same labels.
        batch_size: images per forward pass.
        iterations: the most Lloyd iterations, as in
            [`kmeans`][robust_contrastive.training.lpaft.kmeans].
        tol: the stopping threshold, as in ``kmeans``.
        init: ``"random"`` or ``"k-means++"``, as in ``kmeans``.

    Returns:
        ``(labels, centroids)``: (N,) int64 in [0, k) on the CPU, and (k, F) on the CPU.
    """
    if not isinstance(encoder, RoCLEncoder):
        raise TypeError(f"encoder must be a RoCLEncoder, got {type(encoder).__name__}.")
    data = check_training_images(images, "pseudo_labels()")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    features = _features(encoder, data, batch_size)  # (N, F)
    labels, centroids = kmeans(
        features, k, generator=generator, iterations=iterations, tol=tol, init=init
    )
    return labels.cpu(), centroids.cpu()


# ------------------------------------------------------------------------------ LP-AFT
@dataclass(kw_only=True)
class LPAFTResult(FitResult):
    """What [`train_lpaft`][robust_contrastive.training.lpaft.train_lpaft] returns: the
    fine-tuning's [`FitResult`][robust_contrastive.training.loop.FitResult] (``history``: its
    per-epoch records), the post-processed encoder, and what the earlier stages made."""

    encoder: RoCLEncoder  # the fine-tuned encoder, in eval mode: what DynACL++ evaluates
    classifier: RobustClassifier  # the encoder with its pseudo-label head, in eval mode
    pseudo_labels: torch.Tensor  # (N,) int64 in [0, clusters): the k-means assignment
    cluster_sizes: list[int] = field(default_factory=list)  # images per pseudo-class
    probe_history: list[dict[str, Any]] = field(default_factory=list)  # the probe's records


def _fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, shapes, bytes): ties a run folder to its encoder."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def _images_fingerprint(images: torch.Tensor) -> str:
    """SHA-256 of (N, 3, H, W) uint8 images (shape and bytes): ties pseudo-labels to them."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.detach().cpu().contiguous().reshape(-1).numpy().tobytes())
    return digest.hexdigest()


def _as_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 as is; float in [0, 1] rounded to 8 bits (fine-tuning's data type)."""
    if images.dtype == torch.uint8:
        return images
    return (images.detach().cpu() * 255).round().clamp(0, 255).to(torch.uint8)


def _forget_stages(folder: Path, first: int) -> None:
    """Delete the markers of stages ``first`` (0-based) and later: a stage that is (re)computed
    makes every later stage stale, which must then never be resumed."""
    for marker in _STAGE_MARKERS[first:]:
        (folder / marker).unlink(missing_ok=True)


def _check_run_folder(folder: Path, config: LPAFTConfig, resume: bool) -> None:
    """Refuse to resume a run folder written with other settings (but ``RESUMABLE_CHANGES``);
    a fresh start (``resume=False``) forgets the stages an earlier run finished there, and its
    encoder, so that nothing of it is resumed or loaded after a crash of this run."""
    path = folder / LPAFT_CONFIG_NAME
    if not resume:
        _forget_stages(folder, 0)
        if path.is_file():  # an earlier LP-AFT run's encoder (save_pretrained's files)
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                (folder / name).unlink(missing_ok=True)
        return
    if not path.is_file():
        return
    saved = LPAFTConfig.from_dict(json.loads(path.read_text()))
    differences = config.differences(saved, ignore=RESUMABLE_CHANGES)
    if differences:
        raise ValueError(
            f"{folder} holds an LP-AFT run with other settings ({differences}, as (now, saved)): "
            "resume it with its own settings, or pass resume=False to start over."
        )


def _stage_pseudo_labels(
    clusterer: RoCLEncoder,
    images: torch.Tensor,
    config: LPAFTConfig,
    folder: Path | None,
    resume: bool,
    fingerprints: dict[str, str],
) -> torch.Tensor:
    """Stage 1: the pseudo-labels of ``clusterer``'s features (read back from
    ``pseudo_labels.json`` when resuming, if its ``fingerprints`` are the run's: the SHA-256 of
    the encoder fine-tuned, of the one clustered and of the images)."""
    path = None if folder is None else folder / PSEUDO_LABELS_NAME
    if resume and path is not None and path.is_file():
        saved = json.loads(path.read_text())
        if any(saved.get(key) != value for key, value in fingerprints.items()):
            raise ValueError(
                f"{path} was made from another encoder (or cluster_encoder) or another set of "
                "images: resume with the run's own encoders and data, or pass resume=False to "
                "start over."
            )
        logger.info("pseudo-labels read from %s (stage 1 already done)", path)
        return torch.tensor(saved["labels"], dtype=torch.long)
    generator = torch.Generator().manual_seed(config.seed)
    labels, _ = pseudo_labels(
        clusterer,
        images,
        config.clusters,
        generator=generator,
        batch_size=config.batch_size,
        iterations=config.kmeans_iterations,
        tol=config.kmeans_tol,
        init=config.kmeans_init,
    )
    sizes = torch.bincount(labels, minlength=config.clusters).tolist()
    logger.info("k-means pseudo-labels: %d clusters of sizes %s", config.clusters, sizes)
    if path is not None and folder is not None:
        _forget_stages(folder, 1)  # a probe or fine-tuning of earlier labels is stale now
        record = {
            "format_version": _FORMAT_VERSION,
            "clusters": config.clusters,
            "cluster_sizes": sizes,
            **fingerprints,
            "labels": labels.tolist(),
        }
        atomic_write_text(path, json.dumps(record) + "\n")
    return labels


def _stage_probe(
    encoder: RoCLEncoder,
    pseudo: ImageDataset,
    config: LPAFTConfig,
    folder: Path | None,
    resume: bool,
) -> tuple[nn.Linear, list[dict[str, Any]]]:
    """Stage 2: the clean linear probe on the pseudo-labels (read back when resuming)."""
    from ..evaluation.probe import RobustLinearProbe

    probe_dir = None if folder is None else folder / PROBE_DIR
    history_path = None if probe_dir is None else probe_dir / PROBE_HISTORY_NAME
    if (
        resume
        and probe_dir is not None
        and history_path is not None
        and (probe_dir / CONFIG_NAME).is_file()
        and history_path.is_file()
    ):
        probe = RobustLinearProbe.from_pretrained(probe_dir)
        logger.info("linear probe read from %s (stage 2 already done)", probe_dir)
        history: list[dict[str, Any]] = json.loads(history_path.read_text())
        return probe.head, history
    padding = config.crop_padding
    probe = RobustLinearProbe(
        copy.deepcopy(encoder),  # frozen in place by the probe: a copy
        config.clusters,
        epochs=config.probe_epochs,
        batch_size=config.batch_size,
        lr=config.probe_lr,
        momentum=config.probe_momentum,
        weight_decay=config.probe_weight_decay,
        schedule="step",
        milestones=(config.probe_epochs,),  # never reached: a constant lr, as the official
        augmentation=lambda x, generator: random_crop_flip(x, padding, generator),
    )
    with torch.no_grad():  # the official head starts at zero (LPAFT.py cvt_state_dict)
        probe.head.weight.zero_()
        probe.head.bias.zero_()
    result = probe.fit(pseudo, seed=config.seed, progress=config.progress, warm_start=True)
    if folder is not None and probe_dir is not None and history_path is not None:
        _forget_stages(folder, 2)  # a fine-tuning from an earlier probe is stale now
        probe.save_pretrained(probe_dir)
        atomic_write_text(history_path, json.dumps(result.history) + "\n")  # the stage's end
    return probe.head, result.history


def _load_encoder(encoder: object, name: str) -> RoCLEncoder:
    """``encoder`` itself, or the one a registered name / folder loads; a TypeError otherwise."""
    if isinstance(encoder, (str, os.PathLike)):
        encoder = RoCLEncoder.from_pretrained(encoder)
    if not isinstance(encoder, RoCLEncoder):
        raise TypeError(
            f"{name} must be a RoCLEncoder or a model name / folder, got "
            f"{type(encoder).__name__}: e.g. 'rocl-resnet18-w16-cifar10-cpu'."
        )
    return encoder


def train_lpaft(
    encoder: RoCLEncoder | str | os.PathLike[str],
    data: ImageDataset | torch.Tensor,
    config: LPAFTConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    cluster_encoder: RoCLEncoder | str | os.PathLike[str] | None = None,
) -> LPAFTResult:
    """DynACL++'s post-processing of ``encoder`` on unlabelled ``data``: LP-AFT on k-means
    pseudo-labels. **No label is used**: an ImageDataset's labels are ignored throughout.

    1. **Pseudo-labels** ([`pseudo_labels`][robust_contrastive.training.lpaft.pseudo_labels]):
       k-means (k = ``clusters``) on the encoder's (or ``cluster_encoder``'s) features f(x),
       (N, F), of the un-augmented images; y_hat = argmin_c ||f(x) - mu_c||^2.
    2. **Linear probe (LP)** ([`RobustLinearProbe`][robust_contrastive.RobustLinearProbe], clean,
       encoder frozen in eval mode, head started at zero): ``min_W CE(W f(t(x)), y_hat)`` over
       ``probe_epochs`` epochs, t a random padded crop + flip.
    3. **Adversarial full fine-tuning (AFT)** ([`finetune`][robust_contrastive.finetune] with
       ``method="trades"``, from the probe's head): every parameter minimises
       ``CE(h(t(x)), y_hat) + beta * KL(h(t(x)) || h(x_adv))``, h = head . f, x_adv the PGD
       maximiser of the KL in the l-inf ball of radius ``eps`` around t(x) (the encoder in eval
       mode for the attack, in training mode for the loss).

    The result is the fine-tuned encoder (the pseudo-label head is discarded by evaluation,
    which trains its own head on the true labels: SLF, ALF, AFF).

    Args:
        encoder: the encoder to post-process (copied: the argument is not modified), or a
            registered name / folder for ``RoCLEncoder.from_pretrained``.
        data: the training images, an [`ImageDataset`][robust_contrastive.ImageDataset] (its
            labels are ignored) or (N, 3, H, W) uint8 / float in [0, 1] (float images are
            rounded to 8 bits for the fine-tuning, which trains on uint8 images).
        config: the settings (defaults: the official CIFAR-10 run).
        out_dir: the run folder: the fine-tuned encoder (``save_pretrained`` layout, so
            ``RoCLEncoder.from_pretrained(out_dir)`` and ``robust-contrastive protocol --model
            out_dir`` load it), ``lpaft_config.json``, ``pseudo_labels.json`` (the labels, the
            cluster sizes, the SHA-256 of the encoder, of the one clustered and of the
            images), ``probe/`` (the probe, stage
            2) and ``finetune/`` (the fine-tuning run: metrics, checkpoints, the classifier,
            stage 3).
            ``None`` keeps everything in memory.
        cluster_encoder: the encoder whose features stage 1 clusters (copied), or a registered
            name / folder; default ``None``: ``encoder`` itself. The official DynACL++
            clusters the features of the network's *clean* BatchNorm branch (``'normal'``,
            ``assign_label.py``) and fine-tunes its *adversarial* one: to follow it, pass the
            checkpoint converted with ``branch="clean"`` here and with ``branch="adv"`` (the
            default) as ``encoder``.
        resume: continue a killed run in ``out_dir``: finished stages are read back, not redone,
            and the fine-tuning continues from its last checkpoint (the same result as an
            uninterrupted run; the encoder, the data and the settings must be the same). A
            stage that is computed (not read back) deletes the later stages' markers first, so
            a stage made from another pseudo-labelling or probe is never resumed; a fresh start
            (``resume=False``) forgets every stage of an earlier run in ``out_dir``, and its
            encoder.

    Returns:
        An [`LPAFTResult`][robust_contrastive.training.lpaft.LPAFTResult]: ``history`` (the
        fine-tuning's records: ``loss``, ``loss_ce``, ``loss_kl``, ``train_clean_acc``,
        ``train_adv_acc`` against the pseudo-labels, ``lr``, ``images_per_s``, ``seconds``),
        ``encoder``, ``classifier``, ``pseudo_labels``, ``cluster_sizes``, ``probe_history``.

    Raises:
        TypeError: a config, encoder or data of the wrong type.
        ValueError: bad settings or data (fewer images than clusters), ``resume`` without
            ``out_dir``, an ``out_dir`` that is the encoder's own folder, or a run folder of
            another encoder, data or settings.
        NonFiniteLossError: a loss became NaN or infinite.
    """
    from ..evaluation.finetuning import FinetuneConfig, finetune

    if not isinstance(config, LPAFTConfig):
        raise TypeError(
            f"config must be an LPAFTConfig, got {type(config).__name__}: build it with "
            "LPAFTConfig(...) (or LPAFTConfig.from_dict(values))."
        )
    config.validate()
    sources = [Path(e) for e in (encoder, cluster_encoder) if isinstance(e, (str, os.PathLike))]
    encoder = _load_encoder(encoder, "encoder")
    clusterer = (
        None if cluster_encoder is None else _load_encoder(cluster_encoder, "cluster_encoder")
    )
    images = _as_uint8(check_training_images(data, "train_lpaft()"))  # labels are never read
    if images.shape[0] < config.clusters:
        raise ValueError(
            f"{images.shape[0]} image(s) cannot make {config.clusters} clusters: use more images "
            "or fewer clusters."
        )
    folder = Path(out_dir) if out_dir is not None else None
    if resume and folder is None:
        raise ValueError("resume=True needs the out_dir holding the run.")
    if folder is not None and any(
        path.exists() and path.resolve() == folder.resolve() for path in sources
    ):
        raise ValueError(
            f"out_dir {folder} is the folder of an encoder given (encoder or cluster_encoder): "
            "it would be overwritten; write the post-processed encoder to another folder."
        )
    device = resolve_device(config.device)
    model = copy.deepcopy(encoder).to(device).eval()
    clustered = model if clusterer is None else copy.deepcopy(clusterer).to(device).eval()
    fingerprints: dict[str, str] = {}  # what ties a run folder's stages to their inputs
    if folder is not None:
        encoder_sha256 = _fingerprint(model)
        fingerprints = {
            "encoder_sha256": encoder_sha256,
            "cluster_encoder_sha256": (
                encoder_sha256 if clustered is model else _fingerprint(clustered)
            ),
            "images_sha256": _images_fingerprint(images),
        }
        _check_run_folder(folder, config, resume)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / LPAFT_CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")

    labels = _stage_pseudo_labels(clustered, images, config, folder, resume, fingerprints)
    del clustered  # only stage 1 needs it
    classes = tuple(f"cluster {c}" for c in range(config.clusters))
    pseudo = ImageDataset(images, labels, classes)  # the images with their pseudo-labels
    head, probe_history = _stage_probe(model, pseudo, config, folder, resume)

    finetune_config = FinetuneConfig(
        method="trades",
        trades_beta=config.trades_beta,
        eps=config.eps,
        alpha=config.alpha,
        attack_steps=config.attack_steps,
        attack_norm="linf",
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_schedule="step" if config.milestones else "constant",
        milestones=config.milestones if config.milestones else None,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        augment="crop_flip",
        crop_padding=config.crop_padding,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
        checkpoint_every=config.checkpoint_every,
    )
    result = finetune(
        model.requires_grad_(True),  # copied by finetune; every parameter is trained
        pseudo,
        finetune_config,
        head=head,
        num_classes=config.clusters,
        out_dir=None if folder is None else folder / FINETUNE_DIR,
        resume=resume,
    )
    classifier = result.model.eval()
    tuned = classifier.encoder
    if folder is not None:
        tuned.save_pretrained(folder)
        logger.info("saved the LP-AFT encoder to %s", folder)
    return LPAFTResult(
        history=result.history,
        out_dir=folder,
        best_epoch=result.best_epoch,
        encoder=tuned,
        classifier=classifier,
        pseudo_labels=labels,
        cluster_sizes=torch.bincount(labels, minlength=config.clusters).tolist(),
        probe_history=probe_history,
    )
