"""Black-box transfer (the paper's Table 2): adversaries crafted on one model, scored on another."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..attacks import PGD, InstanceWiseAttack
from ..data import ImageDataset
from ..modes import eval_mode
from ..validation import check_images


def transfer_accuracy(
    target: nn.Module,
    data: ImageDataset | tuple[torch.Tensor, torch.Tensor],
    attack: PGD | InstanceWiseAttack,
    *,
    n_images: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> float:
    """Accuracy of ``target`` on adversarial examples crafted by ``attack`` on another model.

    Args:
        target: the classifier under test, images in [0, 1] -> logits.
        data: held-out images and labels (ImageDataset, or (images float in [0, 1], labels)).
        attack: a class-wise [`PGD`][robust_contrastive.attacks.PGD] built on the *source*
            classifier ("PGD" columns of Table 2), or an
            [`InstanceWiseAttack`][robust_contrastive.InstanceWiseAttack] on a source encoder and
            projector ("inst." columns: label-free, the clean image is its own positive).
        n_images: use the first ``n_images``.
        seed: seeds the attack's random start.

    Returns:
        The target's accuracy in [0, 1] on the transferred adversarial examples.
    """
    images, labels = (data.images, data.labels) if isinstance(data, ImageDataset) else data
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    check_images(images, "images")
    if n_images is not None:
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, got {n_images}.")
        images, labels = images[:n_images], labels[:n_images]
    if images.shape[0] < 2 and isinstance(attack, InstanceWiseAttack):
        raise ValueError("the instance-wise attack needs at least 2 images (its negatives).")
    device = next(target.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    correct = 0
    with eval_mode(target):
        for start in tqdm(
            range(0, images.shape[0], batch_size), desc="transfer", disable=not progress
        ):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            if isinstance(attack, InstanceWiseAttack):
                if x.shape[0] == 1:  # a lone last image: attack it beside its predecessor
                    pair = images[start - 1 : start + 1].to(device)  # (2, 3, H, W)
                    adv = attack.perturb(pair, pair, generator)[1:]
                else:
                    adv = attack.perturb(x, x, generator)
            else:
                adv = attack.perturb(x, y, generator)
            with torch.no_grad():
                correct += int((target(adv).argmax(dim=1) == y).sum())
    return correct / images.shape[0]
