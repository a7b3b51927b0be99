"""Run RoCL's label-free instance-wise attack (eq. 4) on an encoder + projector.

The attack needs no labels: starting from one augmented view t(x) of each image, it takes
projected sign-gradient steps that *increase* the contrastive loss between t(x) and the other
view t'(x) (the other images of the batch are the negatives), so the model no longer recognises
the perturbed image as the same instance:

    t(x)^{i+1} = Pi_{B(t(x), eps)}( t(x)^i + alpha * sign(grad L_con(t(x)^i, {t'(x)}, negatives)) )

The script

1. loads a trained ``RoCLEncoder`` + ``ProjectionHead`` pair: by default the bundled
   ``rocl-resnet18-w16-cifar10-cpu`` (its projector is in ``projector/``), or a registered name
   such as its SimCLR twin ``simclr-resnet18-w16-cifar10-cpu``, or a folder written by
   ``RoCLTrainer`` / ``robust-contrastive train`` (``--model DIR``: the encoder in DIR, the
   projector in DIR/projector); ``--model random`` builds a randomly initialised pair;
2. makes two views of a batch of the bundled held-out CIFAR-10 sample (images the bundled
   models never trained on) with ``SimCLRAugmentation``;
3. runs ``InstanceWiseAttack`` and logs the contrastive loss before and after the attack and
   the largest pixel change (never more than eps);
4. writes ``OUT/attack.json`` (the numbers) and ``OUT/attack.png`` (rows: t(x), t(x)^adv, and
   the perturbation magnified to the full range).

Run (from the repository root)::

    python examples/instance_wise_attack.py --out runs/example-attack
    python examples/instance_wise_attack.py --model simclr-resnet18-w16-cifar10-cpu \\
        --out runs/attack-simclr
    python examples/instance_wise_attack.py --model quickstart-run/rocl --out runs/attack-quickstart
    python examples/instance_wise_attack.py --tiny --out /tmp/attack-tiny
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import save_image

from robust_contrastive import (
    InstanceWiseAttack,
    ProjectionHead,
    RoCLEncoder,
    SimCLRAugmentation,
    load_sample,
    nt_xent_loss,
)

logger = logging.getLogger("instance_wise_attack")

BUNDLED = "rocl-resnet18-w16-cifar10-cpu"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Instance-wise attack on an encoder + projector.")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/example-attack"),
        help="output folder for attack.json and attack.png",
    )
    parser.add_argument(
        "--model",
        default=BUNDLED,
        help="a registered encoder name or a training output folder (encoder in DIR, projector "
        f"in DIR/projector), or 'random' for a randomly initialised pair (default: {BUNDLED})",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images attacked (default: 64)")
    parser.add_argument("--eps", type=float, default=8 / 255, help="l-inf radius (default: 8/255)")
    parser.add_argument("--alpha", type=float, default=0.007, help="step size (default: 0.007)")
    parser.add_argument("--steps", type=int, default=7, help="PGD steps (default: 7)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--tiny", action="store_true", help="a quick run: 16 images (a width-8 model if random)"
    )
    return parser.parse_args(argv)


def load_models(
    model: str, width: int, calibration: torch.Tensor
) -> tuple[RoCLEncoder, ProjectionHead]:
    """The encoder f_theta and projector g_pi, trained (a folder or registered name) or random.

    A random encoder's BatchNorm layers still hold their initial running statistics (mean 0,
    variance 1), which make every image look alike in eval mode, the mode the attack runs in.
    A few forward passes in train mode over ``calibration`` images estimate real statistics.
    """
    if model != "random":
        encoder = RoCLEncoder.from_pretrained(model)
        projector = ProjectionHead.from_pretrained(model)  # the projector/ of the encoder
        logger.info("loaded %s and its projector from %s", encoder.config, model)
    else:
        encoder = RoCLEncoder("resnet18", width=width)
        projector = ProjectionHead(encoder.feature_dim, hidden_dim=4 * encoder.feature_dim)
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a cumulative average over the calibration batches
        encoder.train()
        with torch.no_grad():
            for batch in calibration.split(64):
                encoder(batch)
        logger.info("built a randomly initialised %s", encoder.config)
    return encoder.eval(), projector.eval()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.tiny:
        args.batch_size = 16
    torch.manual_seed(args.seed)
    sample = load_sample(held_out=True)  # 2,000 CIFAR-10 images, (N, 3, 32, 32) uint8
    order = torch.randperm(len(sample), generator=torch.Generator().manual_seed(args.seed))
    images = sample.images[order[: args.batch_size]]  # (B, 3, 32, 32) uint8, mixed classes
    calibration = sample.images[-(32 if args.tiny else 256) :].float() / 255
    encoder, projector = load_models(args.model, 8 if args.tiny else 16, calibration)

    # Two augmented views t(x), t'(x) of the same images, reproducible with a generator.
    generator = torch.Generator().manual_seed(args.seed)
    augment = SimCLRAugmentation(size=32)
    view, positive = augment(images, generator), augment(images, generator)  # float in [0, 1]

    attack = InstanceWiseAttack(
        encoder, projector, eps=args.eps, alpha=args.alpha, steps=args.steps
    )
    adversarial = attack(view, positive, generator=generator)  # (B, 3, 32, 32), detached

    with torch.no_grad():
        z_positive = attack.embed(positive)
        before = float(nt_xent_loss(attack.embed(view), z_positive))
        after = float(nt_xent_loss(attack.embed(adversarial), z_positive))
    max_change = float((adversarial - view).abs().max())
    logger.info("%r", attack)
    logger.info("contrastive loss before the attack: %.4f", before)
    logger.info("contrastive loss after the attack:  %.4f", after)
    logger.info(
        "max |t(x)^adv - t(x)| = %.5f (eps = %.5f, %.2f/255)",
        max_change,
        args.eps,
        max_change * 255,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "model": str(args.model),
        "images": args.batch_size,
        "eps": args.eps,
        "alpha": args.alpha,
        "steps": args.steps,
        "loss_before": before,
        "loss_after": after,
        "max_perturbation": max_change,
    }
    (args.out / "attack.json").write_text(json.dumps(summary, indent=2) + "\n")
    shown = min(args.batch_size, 8)
    delta = adversarial[:shown] - view[:shown]
    magnified = (delta / (2 * max(args.eps, 1e-12)) + 0.5).clamp(0, 1)  # -eps..eps -> 0..1
    save_image(
        torch.cat((view[:shown], adversarial[:shown], magnified)),
        args.out / "attack.png",
        nrow=shown,
        padding=2,
    )
    logger.info("wrote %s and %s", args.out / "attack.json", args.out / "attack.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
