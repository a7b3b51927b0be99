"""A new training method in one small file: an ``Objective`` on the library's ``TrainingLoop``.

The method here distils a frozen robust teacher into a fresh student, robustly: each step takes
an augmented view t(x), attacks the *student* with the instance-wise attack (eq. 4 of RoCL, with
the cosine objective of Table 7: t(x)^adv moves the student's embedding away from its own
embedding of t(x)), and pulls the student's embeddings of both t(x) and t(x)^adv towards the
teacher's embedding of t(x) (cosine distance). A frozen teacher and a student
is the shape of DeACL (Zhang et al. 2022); this is a demonstration of the interface, not DeACL.

Only the objective is written here: the loop brings the data order, the schedule, the metrics
(``OUT/metrics.jsonl``), atomic checkpoints with exact resumption (``--resume``) and the progress
bar. The teacher is the bundled RoCL encoder ``rocl-resnet18-w16-cifar10-cpu`` and its projector.

Run (from the repository root)::

    python examples/custom_objective.py --out runs/example-distil      # 1,000 images, a minute
    python examples/custom_objective.py --tiny --out /tmp/distil-tiny   # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robust_contrastive import (
    InstanceWiseAttack,
    ProjectionHead,
    RoCLEncoder,
    SimCLRAugmentation,
    load_sample,
)
from robust_contrastive.training import Objective, TrainingLoop

TEACHER = "rocl-resnet18-w16-cifar10-cpu"


class RobustDistillation(Objective):
    """Cosine distance of the student's embeddings of t(x) and t(x)^adv to the teacher's of t(x).

    Args:
        student: encoder and projector trained, (B, 3, H, W) in [0, 1] -> (B, D).
        teacher: the same shape of model, frozen (used, not trained: not in ``modules``).
    """

    name = "distil"
    metrics = ("loss", "loss_clean", "loss_adv")

    def __init__(self, student: nn.Sequential, teacher: nn.Sequential) -> None:
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.augment = SimCLRAugmentation(size=None)
        encoder, projector = student
        self.attack = InstanceWiseAttack(encoder, projector, steps=3, loss="cosine")

    def modules(self) -> dict[str, nn.Module | None]:
        return {"student": self.student}

    def loss(
        self, batch: tuple[torch.Tensor, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        (images,) = batch  # (B, 3, H, W) uint8
        view = self.augment(images, generator)  # t(x): (B, 3, H, W) in [0, 1]
        with torch.no_grad():
            target = self.teacher(view)  # (B, D)
        adversarial = self.attack.perturb(view, view, generator)  # t(x)^adv against the student
        z_clean, z_adv = self.student(torch.cat((view, adversarial))).chunk(2)  # 2 x (B, D)
        clean = 1 - F.cosine_similarity(z_clean, target).mean()
        adv = 1 - F.cosine_similarity(z_adv, target).mean()
        loss = clean + adv
        return loss, torch.stack((loss, clean, adv)).detach()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Robust distillation on the training loop.")
    parser.add_argument("--out", type=Path, default=Path("runs/example-distil"))
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke test")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    per_class, epochs = (4, 1) if args.tiny else (args.images_per_class, args.epochs)
    data = load_sample().stratified(per_class, seed=0)
    teacher = nn.Sequential(
        RoCLEncoder.from_pretrained(TEACHER), ProjectionHead.from_pretrained(TEACHER)
    )
    with torch.random.fork_rng():  # a seeded student without touching the global generator
        torch.manual_seed(0)
        encoder = RoCLEncoder("resnet18", width=8)
        student = nn.Sequential(encoder, ProjectionHead(encoder.feature_dim, 256, 128))
    objective = RobustDistillation(student, teacher)
    loop = TrainingLoop(
        objective,
        torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9),
        epochs=epochs,
        batch_size=32,
        lr_at=lambda epoch: 0.05,
        order_generator=torch.Generator().manual_seed(0),
        generator=torch.Generator().manual_seed(1),
        out_dir=args.out,
        config={"per_class": per_class, "teacher": TEACHER},
        config_name="distil_config.json",
        progress=not args.tiny,
    )
    result = loop.run((data.images,), resume=args.resume)
    for record in result.history:
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()})
        )


if __name__ == "__main__":
    main()
