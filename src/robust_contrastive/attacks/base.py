"""The base of every attack: hyperparameters checked once, one call shape, one PGD iteration."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeAlias, TypeVar

import torch
from torch import nn

from ..modes import eval_mode
from ..validation import check_budget, check_generator, check_images
from ._steps import ascent_step, project, random_start

__all__ = ["Attack"]

Context = TypeVar("Context")
Target: TypeAlias = "torch.Tensor | None"  # labels (B,), positives (B, 3, H, W), None (TRADES)
OptionalGenerator: TypeAlias = "torch.Generator | None"


class Attack(Generic[Context]):
    """Projected gradient ascent within the eps-ball of each image, inside [0, 1].

    ``Context`` is what ``prepare`` computes once per call for the steps (the labels, the
    positives' embeddings, the clean prediction...).

    Args:
        eps: radius of the ball (>= 0; 0 returns the images unchanged).
        alpha: step size (> 0).
        steps: number of ascent steps (>= 0).
        norm: ``"linf"``, ``"l2"`` or ``"l1"`` (sparse l1 steps, SLIDE).
        random_start: start from a random point of the ball instead of the images.

    Call:
        ``attack(images, target=None, generator=None)``: images (B, 3, H, W) float in [0, 1];
        ``target`` what the attack moves away from (labels (B,) for class-wise attacks, the
        positive views (B, 3, H, W) for the instance-wise attack, ``None`` for TRADES, whose
        target is the model's clean prediction); ``generator`` for the random start, on the
        images' device. Returns adversarial images (B, 3, H, W), detached, within eps of
        ``images`` and in [0, 1]. The attacked modules run in eval mode and get their previous
        modes back, even on error; their parameters' ``.grad`` are left untouched (gradients come
        from ``torch.autograd.grad``). The call validates its inputs;
        [`perturb`][robust_contrastive.attacks.base.Attack.perturb] skips the checks.
    """

    # The constructor's settings shown by repr (floats with 5 significant digits).
    repr_fields: ClassVar[tuple[str, ...]] = ("eps", "alpha", "steps", "norm", "random_start")

    def __init__(self, eps: float, alpha: float, steps: int, norm: str, random_start: bool) -> None:
        check_budget(eps, alpha, steps, norm)
        self.eps = float(eps)
        self.alpha = float(alpha)
        self.steps = steps
        self.norm = norm
        self.random_start = random_start

    @property
    def modules(self) -> tuple[nn.Module, ...]:
        """The modules put in eval mode during an attack."""
        raise NotImplementedError

    def __repr__(self) -> str:
        values = (getattr(self, name) for name in self.repr_fields)
        shown = (f"{v:.5g}" if isinstance(v, float) else repr(v) for v in values)
        fields = ", ".join(f"{name}={value}" for name, value in zip(self.repr_fields, shown))
        return f"{type(self).__name__}({fields})"

    def __call__(
        self, images: torch.Tensor, target: Target = None, generator: OptionalGenerator = None
    ) -> torch.Tensor:
        check_images(images, "images")
        target = self.check_target(images, target)
        check_generator(generator, images.device)
        return self.perturb(images, target, generator)

    def check_target(self, images: torch.Tensor, target: Target) -> Target:
        """Validate ``target`` for ``images`` (already checked); return it as ``perturb`` takes
        it. Raises ``TypeError`` / ``ValueError`` with the fix."""
        raise NotImplementedError

    def perturb(
        self, images: torch.Tensor, target: Target = None, generator: OptionalGenerator = None
    ) -> torch.Tensor:
        """The attack without input validation (no host synchronisation), for trusted callers
        such as training loops. Same contract as the call."""
        if self.eps == 0 or (self.steps == 0 and not self.random_start):
            return images.detach().clone()
        with eval_mode(*self.modules):
            images = images.detach()
            context = self.prepare(images, target)
            x_adv = self.start(images, generator)
            with torch.enable_grad():
                for _ in range(self.steps):
                    grad = self.gradient(x_adv, context)
                    x_adv = ascent_step(x_adv.detach(), grad, self.alpha, self.norm)
                    x_adv = project(x_adv, images, self.eps, self.norm)
            return self.finish(x_adv, context).detach()

    def prepare(self, images: torch.Tensor, target: Target) -> Context:
        """What every step needs, computed once per call (in eval mode)."""
        raise NotImplementedError

    def start(self, images: torch.Tensor, generator: OptionalGenerator) -> torch.Tensor:
        """The first iterate: a random point of the ball, or the images."""
        if self.random_start:
            return random_start(images, self.eps, self.norm, generator)
        return images.clone()

    def objective(self, adversarial: torch.Tensor, context: Context) -> torch.Tensor:
        """The scalar the attack ascends at ``adversarial`` (B, 3, H, W)."""
        raise NotImplementedError

    def gradient(self, x_adv: torch.Tensor, context: Context) -> torch.Tensor:
        """The gradient of ``objective`` with respect to ``x_adv``: (B, 3, H, W)."""
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.objective(x_adv, context), x_adv)
        return grad

    def finish(self, x_adv: torch.Tensor, context: Context) -> torch.Tensor:
        """The adversarial images returned from the last iterate ``x_adv``."""
        return x_adv

    @staticmethod
    def required(target: Target, what: str) -> torch.Tensor:
        """``target``, or a ``TypeError`` saying that ``what`` must be passed."""
        if target is None:
            raise TypeError(f"this attack needs {what} as its target.")
        return target
