"""The transformation smoothed classifier of RoCL, eq. (8), and its accuracy per sample count.

``S(x) = argmax_c E_{t ~ T} [l_c(f(t(x)))]`` is approximated, as the paper says, by applying the
linear layer l to the mean of the features f(t_i(x)) of ``n_samples`` random transformations t_i.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..augment import SimCLRAugmentation
from ..data import ImageDataset
from ..validation import check_generator, check_positive_int, model_device
from .probe import RobustLinearProbe, accuracy

__all__ = ["TransformationSmoothedClassifier", "accuracy_vs_samples"]

logger = logging.getLogger(__name__)

Transform = Callable[..., torch.Tensor]


def _takes_generator(transform: Callable[..., Any]) -> bool:
    """Whether ``transform`` is called as ``transform(images, generator)`` (not for ``*args``
    only, as in a torchvision v2 transform, nor for an uninspectable callable)."""
    try:
        parameters = inspect.signature(transform).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.name == "generator" for p in parameters):
        return True
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2


class TransformationSmoothedClassifier(nn.Module):
    """The transformation smoothed classifier of eq. (8): ``head(mean_i encoder(t_i(x)))``.

    Each forward pass encodes the ``n_samples`` randomly transformed copies of the batch as one
    (n_samples * B, 3, H', W') batch.

    Warning:
        Inference is randomised (new transformations at every call). Evaluate its robustness
        with EOT, [`EOTPGD`][robust_contrastive.attacks.EOTPGD], and AutoAttack
        ``version="rand"``; plain PGD alone overestimates it.

    The classifier is inference-only: ``train()`` keeps the encoder and the head (shared, not
    copied) in eval mode, so BatchNorm statistics are never updated. Its forward checks the
    images' shape and dtype but not their values (a host synchronisation per attack step): the
    attacks, [`accuracy`][robust_contrastive.evaluation.probe.accuracy] and
    [`evaluate_robustness`][robust_contrastive.evaluation.suite.evaluate_robustness] refuse NaN,
    inf and values outside [0, 1].

    Args:
        encoder: f, (B, 3, H, W) float in [0, 1] -> (B, F) features.
        head: l, (B, F) -> (B, num_classes) logits (a probe's linear layer).
        n_samples: transformations per image (the more, the smoother; see
            [`accuracy_vs_samples`][robust_contrastive.evaluation.smoothing.accuracy_vs_samples]).
        transform: batched random transformation with per-image parameters, (N, 3, H, W) float
            in [0, 1] -> (N, 3, H', W') float in [0, 1]. Called ``transform(images, generator)``
            when its signature has a parameter named ``generator`` or two named positional
            parameters (like [`SimCLRAugmentation`][robust_contrastive.augment.SimCLRAugmentation]
            or ``lambda x, g: ...``); otherwise called ``transform(images)``, and then its
            randomness is its own (``generator`` does not control it). Beware of transforms that
            draw one set of parameters for the whole batch (torchvision's): every copy would then
            get the same transformation. Default ``SimCLRAugmentation(size=None)``, RoCL's training
            augmentation at the input size.
        generator: source of the transformations' randomness, on the images' device. Two
            classifiers with equally seeded generators give identical logits; each call
            advances it. ``None``: the global random state.

    Shapes:
        ``forward(images)``: (B, 3, H, W) float in [0, 1] -> (B, num_classes) logits.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        n_samples: int = 10,
        transform: Transform | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module) or not isinstance(head, nn.Module):
            raise TypeError(
                "encoder and head must be nn.Modules (e.g. probe.encoder and probe.head); use "
                "TransformationSmoothedClassifier.from_probe(probe) for a RobustLinearProbe."
            )
        check_positive_int("n_samples", n_samples)
        if transform is not None and not callable(transform):
            raise TypeError(
                "transform must be callable as transform(images, generator) or transform(images)."
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}."
            )
        self.encoder = encoder
        self.head = head
        self.n_samples = n_samples
        self.transform: Transform = (
            transform if transform is not None else SimCLRAugmentation(size=None)
        )
        self.generator = generator
        self._pass_generator = _takes_generator(self.transform)
        self.eval()

    @classmethod
    def from_probe(
        cls, probe: RobustLinearProbe, **kwargs: Any
    ) -> TransformationSmoothedClassifier:
        """Smooth a trained
        [`RobustLinearProbe`][robust_contrastive.evaluation.probe.RobustLinearProbe] (sharing its
        encoder and head); ``kwargs`` go to the constructor."""
        if not isinstance(probe, RobustLinearProbe):
            raise TypeError(f"probe must be a RobustLinearProbe, got {type(probe).__name__}.")
        return cls(probe.encoder, probe.head, **kwargs)

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, transform={self.transform!r}"

    def train(self, mode: bool = True) -> TransformationSmoothedClassifier:
        """Set the flag only: the encoder and head stay in eval mode (inference-only model)."""
        super().train(mode)
        self.encoder.eval()
        self.head.eval()
        return self

    def smoothed_features(self, images: torch.Tensor) -> torch.Tensor:
        """The mean of encoder(t_i(images)) over ``n_samples`` transformations.

        (B, 3, H, W) float in [0, 1] -> (B, F).
        """
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}.")
        if images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape)
            raise ValueError(f"images must be (B, 3, H, W) float in [0, 1], got {shape}.")
        if not images.is_floating_point():
            raise TypeError(
                f"images must be float in [0, 1], got {images.dtype}: use images.float() / 255."
            )
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch: pass at least one image.")
        check_generator(self.generator, images.device)
        n, batch = self.n_samples, images.shape[0]
        copies = images.repeat(n, 1, 1, 1)  # (B, 3, H, W) -> (n * B, 3, H, W), copy i = rows iB..
        if self._pass_generator:
            transformed = self.transform(copies, self.generator)
        else:
            transformed = self.transform(copies)
        if not isinstance(transformed, torch.Tensor) or transformed.shape[0] != n * batch:
            raise ValueError(
                "the transform must return a tensor with one image per input image "
                f"({n * batch}), got {getattr(transformed, 'shape', type(transformed))}."
            )
        features: torch.Tensor = self.encoder(transformed)  # (n * B, F)
        return features.view(n, batch, -1).mean(dim=0)  # (n * B, F) -> (n, B, F) -> (B, F)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Eq. (8): (B, 3, H, W) float in [0, 1] -> (B, num_classes) logits, random unless the
        generator is seeded anew."""
        logits: torch.Tensor = self.head(self.smoothed_features(images))
        return logits


def accuracy_vs_samples(
    encoder: nn.Module,
    head: nn.Module,
    images: torch.Tensor | ImageDataset,
    labels: torch.Tensor | None = None,
    sample_counts: Sequence[int] = (1, 2, 4, 8, 16),
    seed: int = 0,
    *,
    transform: Transform | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[int, float]:
    """Clean accuracy of the smoothed classifier (eq. 8) per number of samples (Figure 3d).

    Every count uses a generator seeded with ``seed`` (on the encoder's device), so the counts
    differ by their number of samples, not by their luck.

    Args:
        encoder: f, (B, 3, H, W) float in [0, 1] -> (B, F).
        head: l, (B, F) -> (B, num_classes).
        images: (N, 3, H, W) float in [0, 1], or an ImageDataset (which carries the labels).
        labels: (N,) integer labels (omit with an ImageDataset).
        sample_counts: the values of ``n_samples`` to evaluate (positive integers).
        transform: as in
            [`TransformationSmoothedClassifier`][robust_contrastive.evaluation.smoothing.TransformationSmoothedClassifier]
            (default SimCLR).
        batch_size: images per forward pass (each pass encodes ``n * batch_size`` images).

    Returns:
        ``{n: accuracy in [0, 1]}`` in the order of ``sample_counts``.
    """
    counts = list(sample_counts)
    if not counts:
        raise ValueError("sample_counts is empty: pass e.g. (1, 2, 4, 8, 16).")
    for count in counts:
        check_positive_int("every sample count", count)
    fallback = images.images.device if isinstance(images, ImageDataset) else torch.device("cpu")
    device = model_device(encoder, fallback)
    results: dict[int, float] = {}
    for count in tqdm(counts, desc="samples", disable=None if progress else True):
        generator = torch.Generator(device=device).manual_seed(seed)
        smoothed = TransformationSmoothedClassifier(encoder, head, count, transform, generator)
        results[count] = accuracy(smoothed, images, labels, batch_size=batch_size)
        logger.info("transformation smoothing, %d samples: accuracy %.4f", count, results[count])
    return results
