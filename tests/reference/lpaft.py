"""DynACL++'s post-processing as the official code computes it, written plainly from its
formulas: the reference ``tests/test_lpaft.py`` checks the library against.

Sources: github.com/PKU-ML/DYNACL ``assign_label.py`` (``kmeans(X=rep, num_clusters=10,
distance='euclidean')`` of the ``kmeans_pytorch`` package, github.com/subhadarship/kmeans_pytorch,
``kmeans_pytorch/__init__.py``: ``initialize``, ``kmeans``, ``pairwise_distance``), ``LPAFT.py``
(``MultiStepLR(milestones=[10, 20])`` stepped once per epoch) and ``utils.py`` (``trades_loss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def official_pairwise_distance(data1: torch.Tensor, data2: torch.Tensor) -> torch.Tensor:
    """``pairwise_distance``: (N, D), (K, D) -> (N, K) squared Euclidean distances, computed by
    broadcasting the differences."""
    return ((data1.unsqueeze(1) - data2.unsqueeze(0)) ** 2.0).sum(dim=-1)


def official_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    initial_indices: torch.Tensor,
    tol: float = 1e-4,
    iter_limit: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``kmeans_pytorch.kmeans`` with ``distance='euclidean'`` from the rows ``initial_indices``
    (``initialize`` draws them with ``np.random.choice(N, K, replace=False)``; here they are
    passed in). An empty cluster raises here (the official code takes a random row). Returns
    ``(choice_cluster, cluster_centers)``: the last assignment and the centres after it."""
    state = x[initial_indices].clone()
    iteration = 0
    while True:
        dis = official_pairwise_distance(x, state)
        choice_cluster = torch.argmin(dis, dim=1)
        state_pre = state.clone()
        for index in range(num_clusters):
            selected = torch.nonzero(choice_cluster == index).squeeze()
            selected = torch.index_select(x, 0, selected)
            if selected.shape[0] == 0:
                raise AssertionError("empty cluster: the official code draws a random row")
            state[index] = selected.mean(dim=0)
        center_shift = torch.sum(torch.sqrt(torch.sum((state - state_pre) ** 2, dim=1)))
        iteration += 1
        if center_shift**2 < tol:
            break
        if iter_limit != 0 and iteration >= iter_limit:
            break
    return choice_cluster, state


def official_lr(epoch: int, lr: float = 0.1, milestones: tuple[int, ...] = (10, 20)) -> float:
    """The fine-tuning lr of the (1-based) ``epoch``: ``MultiStepLR(gamma=0.1)`` stepped after
    every epoch, so epoch e runs after e - 1 steps."""
    steps_done = epoch - 1
    return lr * 0.1 ** sum(steps_done >= m for m in milestones)


def official_trades_loss(
    model: nn.Module,
    x_natural: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    step_size: float = 2 / 255,
    epsilon: float = 8 / 255,
    perturb_steps: int = 10,
    beta: float = 6.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``utils.trades_loss`` (l-inf): PGD on ``KLDivLoss(sum)(log_softmax(f(x_adv)),
    softmax(f(x)))`` with the model in eval mode, then, in train mode,
    ``CE(f(x), y) + beta * KL_sum / B``. The official attack starts at ``x_natural`` itself;
    here the start is passed in (``x_natural`` reproduces the official code). Returns
    ``(loss, x_adv)``."""
    batch_size = len(x_natural)
    model.eval()
    x_adv = start.detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            model.eval()
            loss_kl = F.kl_div(
                F.log_softmax(model(x_adv), dim=1),
                F.softmax(model(x_natural), dim=1),
                reduction="sum",
            )
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
    model.train()
    logits = model(x_natural)
    loss = F.cross_entropy(logits, y)
    logits_adv = model(x_adv)
    loss_robust = (1.0 / batch_size) * F.kl_div(
        F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="sum"
    )
    return loss + beta * loss_robust, x_adv
