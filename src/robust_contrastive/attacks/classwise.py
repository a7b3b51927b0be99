"""Class-wise attacks on classifiers (logits from images): PGD, EOT-PGD and AutoAttack.

They share the projected step of ``robust_contrastive.attacks._steps`` with the
instance-wise attack; only the loss differs (cross-entropy on the labels here).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..modes import eval_mode
from ._steps import (
    ascent_step,
    check_budget,
    check_generator,
    check_images,
    check_number,
    project,
    random_start,
)


def _check_labels(labels: torch.Tensor, images: torch.Tensor) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(
            f"labels must be an integer tensor of class indices, shape (B,), got {got}: use "
            "labels.long()."
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},) to match the images, got "
            f"{tuple(labels.shape)}."
        )
    if labels.device != images.device:
        raise ValueError(
            f"labels are on {labels.device} but the images on {images.device}: move them with "
            "labels.to(images.device)."
        )
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels must be class indices >= 0.")


def _check_classes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """Check that ``model`` returns (B, K) logits and that every label is < K; return K.

    One eval-mode forward of a single image without gradients (the model's mode is restored),
    so that a label the model cannot predict is reported here rather than deep inside
    ``cross_entropy`` (or never, when the attack makes no step).
    """
    with eval_mode(model), torch.no_grad():
        logits = model(images[:1])
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"the model must return (B, num_classes) logits, got {shape} for one image: attack "
            "a classifier (e.g. a RobustLinearProbe), not an encoder."
        )
    num_classes = int(logits.shape[1])
    high = int(labels.max())
    if high >= num_classes:
        raise ValueError(
            f"labels go up to {high} but the model outputs {num_classes} classes: labels must be "
            f"class indices in [0, {num_classes})."
        )
    return num_classes


class PGD:
    """Projected gradient descent (Madry et al. 2018) maximising the cross-entropy, eq. (1).

    Args:
        model: a classifier, (B, 3, H, W) float in [0, 1] -> (B, num_classes) logits.
        eps: radius of the ball (8/255 l-inf; 0.25 / 0.5 l2; 7.84 / 12 l1 in the paper).
        alpha: step size. Today's l-inf convention is 2/255 for eps 8/255 (the original RoCL
            evaluation used eps/10, a weaker attack: see the evaluation guide).
        steps: number of steps (20 for the headline evaluation).
        norm: ``"linf"``, ``"l2"`` or ``"l1"`` (sparse l1 steps, SLIDE).
        random_start: start from a random point of the ball.
        keep_first_success: return, for every image, the first iterate that fools the model
            (else the last iterate), so that with a fixed seed more steps never raise the
            robust accuracy. ``False`` returns the last iterate (as torchattacks does).

    Call:
        ``attack(images, labels, generator=None)``: images (B, 3, H, W) float in [0, 1], labels
        (B,) int64 or int32 in [0, num_classes) -> adversarial images (B, 3, H, W), detached, in
        the ball and in [0, 1]. The model runs in eval mode and gets its previous mode back;
        parameters' ``.grad`` are left untouched. The call validates its inputs (one extra
        forward of a single image checks the labels against the model's outputs);
        [`perturb`][robust_contrastive.attacks.PGD.perturb] skips the checks.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 20,
        norm: str = "linf",
        random_start: bool = True,
        keep_first_success: bool = True,
    ) -> None:
        check_budget(eps, alpha, steps, norm)
        self.model = model
        self.eps = float(eps)
        self.alpha = float(alpha)
        self.steps = steps
        self.norm = norm
        self.random_start = random_start
        self.keep_first_success = keep_first_success

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps:.5g}, alpha={self.alpha:.5g}, "
            f"steps={self.steps}, norm={self.norm!r}, random_start={self.random_start})"
        )

    def loss_gradient(
        self, x_adv: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed cross-entropy with respect to ``x_adv`` (B, 3, H, W), and the
        logits (B, num_classes) it was computed from (detached)."""
        x_adv = x_adv.detach().requires_grad_(True)
        logits = self.model(x_adv)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        return grad, logits.detach()

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        check_images(images, "images")
        _check_labels(labels, images)
        check_generator(generator, images.device)
        _check_classes(self.model, images, labels)
        return self.perturb(images, labels.long(), generator)

    def perturb(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The attack without input validation (no host synchronisation), for trusted callers."""
        if self.eps == 0 or (self.steps == 0 and not self.random_start):
            return images.detach().clone()
        with eval_mode(self.model):
            images = images.detach()
            x_adv = (
                random_start(images, self.eps, self.norm, generator)
                if self.random_start
                else images.clone()
            )
            # With keep_first_success, each image keeps the first iterate that fools the model:
            # more steps (same seed, so the same trajectory, extended) can then never raise the
            # robust accuracy. Images not fooled along the way end at the last iterate.
            best = x_adv.clone()
            fooled = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
            view = (-1, *([1] * (images.dim() - 1)))  # (B,) -> (B, 1, 1, 1)
            with torch.enable_grad():
                for _ in range(self.steps):
                    grad, logits = self.loss_gradient(x_adv, labels)
                    if self.keep_first_success:
                        newly = (logits.argmax(dim=1) != labels) & ~fooled
                        best = torch.where(newly.view(view), x_adv, best)
                        fooled |= newly
                    x_adv = project(
                        ascent_step(x_adv, grad, self.alpha, self.norm), images, self.eps, self.norm
                    )
            return torch.where(fooled.view(view), best, x_adv).detach()


class EOTPGD(PGD):
    """PGD with Expectation over Transformation (Athalye et al. 2018) for randomised models.

    Each step averages the gradient over ``eot_samples`` forward passes, each drawing fresh
    randomness inside the model (for example the random transformations of a
    [`TransformationSmoothedClassifier`][robust_contrastive.evaluation.smoothing.TransformationSmoothedClassifier]).
    Attacking a randomised model with plain PGD overestimates its robustness: use this (or
    AutoAttack ``version="rand"``).

    It returns the last iterate: keeping the first iterate that fools one random draw of the
    model (as [`PGD`][robust_contrastive.attacks.PGD] does for deterministic models) would weaken
    the attack.

    Args:
        model: a classifier with random inference.
        eps: radius of the ball.
        alpha: step size.
        steps: number of steps.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        random_start: start from a random point of the ball.
        eot_samples: gradient samples per step (the paper's EoT attack: see its Table 3).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 20,
        norm: str = "linf",
        random_start: bool = True,
        eot_samples: int = 10,
    ) -> None:
        # A randomised model can be "fooled" by one lucky draw: always return the last iterate.
        super().__init__(model, eps, alpha, steps, norm, random_start, keep_first_success=False)
        if isinstance(eot_samples, bool) or not isinstance(eot_samples, int) or eot_samples < 1:
            raise ValueError(f"eot_samples must be a positive integer, got {eot_samples!r}.")
        self.eot_samples = eot_samples

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, eot_samples={self.eot_samples})"

    def loss_gradient(
        self, x_adv: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        grad_sum, logit_sum = super().loss_gradient(x_adv, labels)
        for _ in range(self.eot_samples - 1):
            grad, logits = super().loss_gradient(x_adv, labels)
            grad_sum += grad
            logit_sum += logits
        return grad_sum / self.eot_samples, logit_sum / self.eot_samples


def autoattack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float = 8 / 255,
    norm: str = "linf",
    version: str = "standard",
    num_classes: int = 10,
    seed: int = 0,
) -> torch.Tensor:
    """AutoAttack (Croce & Hein 2020) through torchattacks: adversarial images for ``images``.

    ``version="standard"`` (APGD-CE, APGD-T, FAB-T, Square) is the reference evaluation;
    ``version="rand"`` (APGD-CE and APGD-DLR with EOT) is for randomised models. The model is
    put in eval mode and its mode restored.

    ``num_classes`` must be the number of the model's outputs: the targeted attacks of the
    standard version need at least 4 classes, the DLR loss of the rand version at least 3.

    Raises:
        TypeError / ValueError: bad images, labels, eps, norm, version or num_classes (checked
            before torchattacks is imported).
        ImportError: torchattacks is missing: ``pip install "robust-contrastive[eval]"``.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"AutoAttack supports norm 'linf' or 'l2', got {norm!r}.")
    if version not in ("standard", "rand"):
        raise ValueError(f"version must be 'standard' or 'rand', got {version!r}.")
    check_number("eps", eps, positive=False, example="8/255 for l-inf")
    check_images(images, "images")
    _check_labels(labels, images)
    least = 4 if version == "standard" else 3
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < least:
        raise ValueError(
            f"AutoAttack version={version!r} needs num_classes >= {least} (the number of the "
            f"model's outputs), got {num_classes!r}."
        )
    outputs = _check_classes(model, images, labels)
    if outputs != num_classes:
        raise ValueError(
            f"num_classes={num_classes} but the model outputs {outputs} classes: pass "
            f"num_classes={outputs}."
        )
    try:
        torchattacks: Any = importlib.import_module("torchattacks")
    except ImportError as err:
        raise ImportError(
            'AutoAttack needs torchattacks: pip install "robust-contrastive[eval]"'
            " (torchattacks 3.5.1 pins requests~=2.25.1; to keep a newer requests use"
            " pip install --no-deps torchattacks scipy)"
        ) from err
    labels = labels.long()
    with eval_mode(model):
        attack = torchattacks.AutoAttack(
            model,
            norm="Linf" if norm == "linf" else "L2",
            eps=eps,
            version=version,
            n_classes=num_classes,
            seed=seed,
        )
        # torchattacks' FAB fails on channels_last memory: give it contiguous images.
        adversarial: torch.Tensor = attack(images.contiguous(), labels)
        return adversarial.detach()
