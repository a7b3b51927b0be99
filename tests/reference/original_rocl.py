"""The original RoCL training step, written plainly: the reference the library is checked against.

:class:`OriginalRoCL` computes one step as the original code does (per-image torchvision
augmentation, an attack that forwards ``cat(x_adv, t'(x))`` at every step, a separate train-mode
forward for the regulariser). ``tests/test_throughput_equivalence.py`` feeds it the views and
attack start that ``RoCLTrainer`` draws (:func:`library_views`) and compares losses, adversaries,
BatchNorm statistics and gradients; ``benchmarks/throughput.py`` times it as its baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms

from robust_contrastive import RoCLTrainer
from robust_contrastive.attacks._steps import random_start


def original_nt_xent(z: torch.Tensor, num_views: int, temperature: float) -> torch.Tensor:
    """The original code's NT-Xent (``pairwise_similarity`` + ``NT_xent``) on stacked views.

    Args:
        z: (V*B, D) latents, view-major (rows v*B .. (v+1)*B - 1 are view v).
        num_views: V (2 for the attack and the regulariser, 3 for RoCL's main term).
        temperature: tau.

    Returns:
        Scalar: the mean over the V*B anchors of -log softmax of each positive pair, summed
        over the anchor's V - 1 positives (the original's 1e-8 guards are left out: they move
        the value by ~1e-8).
    """
    n = z.shape[0]
    batch = n // num_views
    z = F.normalize(z, dim=1)
    sim = z @ z.T / temperature  # (N, N)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    item = torch.arange(n, device=z.device) % batch
    positive = (item.unsqueeze(0) == item.unsqueeze(1)) & ~eye  # (N, N) same image, other view
    return -(log_prob * positive).sum() / n


class OriginalRoCL:
    """One training step of RoCL as the original code computes it (the benchmark's baseline).

    Args:
        encoder: f, in its training mode; the attack switches it to eval and back.
        projector: g.
        optimizer: over the encoder's and projector's parameters.
        eps: l-inf radius of the attack; alpha: its step; steps: its number of steps.
        temperature: tau (0.5); reg_lambda: the regulariser's weight is 1 / reg_lambda.
        image_size: RandomResizedCrop's output size.
    """

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        eps: float = 8 / 255,
        alpha: float = 0.007,
        steps: int = 7,
        temperature: float = 0.5,
        reg_lambda: float = 256.0,
        image_size: int = 32,
    ) -> None:
        self.encoder = encoder
        self.projector = projector
        self.optimizer = optimizer
        self.eps, self.alpha, self.steps = eps, alpha, steps
        self.temperature, self.reg_lambda = temperature, reg_lambda
        # The original's CIFAR pipeline, in its order, applied to one image at a time.
        self.transform = transforms.Compose(
            [
                transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                transforms.RandomGrayscale(p=0.2),
                transforms.RandomHorizontalFlip(),
                transforms.RandomResizedCrop(image_size),
            ]
        )

    @classmethod
    def from_trainer(cls, trainer: RoCLTrainer) -> OriginalRoCL:
        """The original step on ``trainer``'s encoder, projector and optimiser, with its
        config's attack, temperature, regulariser weight and image size."""
        cfg = trainer.config
        return cls(
            trainer.encoder,
            trainer.projector,
            trainer.optimizer,
            eps=cfg.eps,
            alpha=cfg.alpha,
            steps=cfg.attack_steps,
            temperature=cfg.temperature,
            reg_lambda=cfg.reg_lambda,
            image_size=cfg.image_size,
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """g(f(images)): (N, 3, H, W) -> (N, D)."""
        out: torch.Tensor = self.projector(self.encoder(images))
        return out

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image torchvision augmentation on the CPU (the original's data loader), global RNG.

        Args:
            images: (B, 3, H, W) uint8 on any device.

        Returns:
            (B, 3, S, S) float in [0, 1] on the images' device.
        """
        cpu = images.cpu()
        views = [self.transform(cpu[i].float().div(255)) for i in range(cpu.shape[0])]
        return torch.stack(views).to(images.device)

    def attack(self, t1: torch.Tensor, t2: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The original ``RepresentationAdv`` loop from ``start`` (B, 3, H, W): every step
        forwards cat(x, t'(x)) in eval mode and ascends the 2-view NT-Xent's input gradient."""
        x = start.detach().clone()
        self.encoder.eval()
        self.projector.eval()
        with torch.enable_grad():
            for _ in range(self.steps):
                x.requires_grad_(True)
                loss = original_nt_xent(self.embed(torch.cat((x, t2))), 2, 0.5)
                (grad,) = torch.autograd.grad(loss, x)
                x = x.detach() + self.alpha * grad.sign()
                x = x.clamp(0.0, 1.0)
                x = torch.max(torch.min(x, t1 + self.eps), t1 - self.eps)
        self.encoder.train()
        self.projector.train()
        return x.detach()

    def loss(
        self, t1: torch.Tensor, t2: torch.Tensor, start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (6) on given views t(x), t'(x) and attack start, models in train mode.

        Returns:
            ``(loss, parts)`` as ``RoCLTrainer.compute_loss``: the loss, and a detached (3,)
            ``(total, contrastive, regulariser before weighting)``.
        """
        adv = self.attack(t1, t2, start)
        # The original's get_loss: the regulariser's own train-mode forward, first.
        regularizer = original_nt_xent(self.embed(torch.cat((adv, t2))), 2, 0.5)
        z = self.embed(torch.cat((t1, t2, adv)))  # (3B, D)
        contrastive = original_nt_xent(z, 3, self.temperature)
        loss = contrastive + (1.0 / self.reg_lambda) * regularizer
        return loss, torch.stack((loss, contrastive, regularizer)).detach()

    def step(self, batch: torch.Tensor) -> torch.Tensor:
        """Augment, attack from a uniform start, loss, backward, optimiser step; returns parts."""
        t1, t2 = self.augment(batch), self.augment(batch)
        noise = torch.empty(t1.shape).uniform_(-self.eps, self.eps).to(t1.device)  # as the orig.
        loss, parts = self.loss(t1, t2, (t1 + noise).clamp(0.0, 1.0))
        self.optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return parts


def library_step(trainer: RoCLTrainer, batch: torch.Tensor) -> torch.Tensor:
    """RoCLTrainer's training step as ``fit`` runs it (without the lr schedule); returns parts."""
    loss, parts = trainer.compute_loss(batch)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    trainer.optimizer.step()
    return parts


def library_views(
    trainer: RoCLTrainer, batch: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The t(x), t'(x) and attack start that ``trainer.compute_loss(batch)`` will draw next
    (from a copy of its generator: the trainer's own state is left as it is)."""
    generator = torch.Generator(device=trainer.generator.device)
    generator.set_state(trainer.generator.get_state())
    t1 = trainer.augment(batch, generator)
    t2 = trainer.augment(batch, generator)
    cfg = trainer.config
    start = random_start(t1, cfg.eps, cfg.attack_norm, generator)
    return t1, t2, start
