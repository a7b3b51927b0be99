"""The official definitions of ACL, DynACL and AIR, re-implemented from their code for the
equivalence tests of tests/test_acl.py (written from the formulas; the call shapes of the
official functions are kept).

Sources: ACL github.com/VITA-Group/Adversarial-Contrastive-Learning (``utils.py`` nt_xent,
``train_simCLR.py`` train / PGD_contrastive / cosine_annealing, ``models/resnet_multi_bn.py``
proj_head / batch_norm_multiple); DynACL github.com/PKU-ML/DYNACL
(``train_DynACL.py`` main / train / reload, ``models/resnet_multi_bn.py`` resnet18_momentum);
AIR github.com/GodXuxilie/RobustSSL_Benchmark ``ACL_Methods/AIR_nips2023`` (``pretraining.py``)
and its ``losses.py`` ``ACL_IR_Loss``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The official batch layout: rows (a_0, b_0, a_1, b_1, ...) (``inputs.view(2B, ...)`` of
    a (B, 2, ...) stack of the two views)."""
    return torch.stack((a, b), dim=1).reshape(-1, *a.shape[1:])


def official_nt_xent(x: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """ACL ``utils.py`` nt_xent: x (2B, D) interleaved pairs."""
    n = x.norm(p=2, dim=1, keepdim=True)
    sim = (x @ x.t()) / (n * n.t()).clamp(min=1e-8)
    sim = torch.exp(sim / t)
    idx = torch.arange(sim.size()[0])
    idx[::2] += 1
    idx[1::2] -= 1
    sim = sim[idx]
    sim = sim.diag() / (sim.sum(0) - torch.exp(torch.tensor(1 / t, dtype=sim.dtype)))
    return -torch.log(sim).mean()


def official_acl_loss(features: torch.Tensor, features_adv: torch.Tensor) -> torch.Tensor:
    """ACL ``train_simCLR.py`` with --ACL_DS: (nt_xent(features) + nt_xent(features_adv)) / 2."""
    return (official_nt_xent(features) + official_nt_xent(features_adv)) / 2


def official_dynacl_weight_adv(
    epoch: int, reload_frequency: int, epochs: int, swap: float
) -> float:
    """DynACL ``train_DynACL.py`` train(): weight_adv at the 1-based ``epoch``."""
    return min(1.0 + (epoch // reload_frequency) * (reload_frequency / epochs) * swap, 2)


def official_dynacl_loss(
    features: torch.Tensor, features_adv: torch.Tensor, weight_adv: float
) -> torch.Tensor:
    """DynACL ``train_DynACL.py`` train(): the re-weighted dual-stream loss."""
    return (
        official_nt_xent(features) * (2 - weight_adv) + official_nt_xent(features_adv) * weight_adv
    ) / 2


def official_dynacl_strengths(epochs: int, reload_frequency: int) -> list[float]:
    """DynACL ``train_DynACL.py`` main(): the strength of each epoch 1..epochs (a fresh run)."""
    strengths = []
    strength = 1.0
    for epoch in range(1, epochs + 1):
        if epoch % reload_frequency == 1 or reload_frequency == 1:
            strength = 1 - (epoch - 1) / epochs
        strengths.append(strength)
    return strengths


def official_air_strength_and_weight(
    epoch: int, epochs: int, lam: float = 2 / 3
) -> tuple[float, float]:
    """AIR ``pretraining.py`` with --DynAug: (strength, weight) at the 1-based ``epoch``."""
    k = 50
    strength = 1 - int((epoch - 1) / k) * k / epochs
    return strength, lam * (1 - strength)


def official_cosine_annealing(
    step: int, total_steps: int, lr_max: float, lr_min: float, warmup_steps: int = 0
) -> float:
    """``cosine_annealing`` of the three scripts."""
    if step < warmup_steps:
        return lr_max * step / warmup_steps
    return float(
        lr_min
        + (lr_max - lr_min)
        * 0.5
        * (1 + np.cos((step - warmup_steps) / (total_steps - warmup_steps) * np.pi))
    )


def official_lrs_per_step(
    lr: float, epochs: int, steps: int, warmup_epochs: int = 10
) -> list[float]:
    """ACL / AIR: the lr of every step (LambdaLR, ``scheduler.step()`` before each step)."""
    return [
        lr
        * official_cosine_annealing(
            j + 1, epochs * steps, 1, 1e-6 / lr, warmup_steps=warmup_epochs * steps
        )
        for j in range(epochs * steps)
    ]


def official_lrs_per_epoch(lr: float, epochs: int, warmup_epochs: int = 10) -> list[float]:
    """DynACL: the lr of every epoch (LambdaLR, ``scheduler.step()`` after each epoch)."""
    return [
        lr * official_cosine_annealing(e, epochs, 1, 1e-6 / lr, warmup_steps=warmup_epochs)
        for e in range(epochs)
    ]


def official_acl_ir_loss(
    zi: torch.Tensor,
    zj: torch.Tensor,
    z_orig: torch.Tensor,
    zi_adv: torch.Tensor,
    zj_adv: torch.Tensor,
    weight: float = 0.0,
    temperature: float = 0.5,
    lambda1: float = 0.5,
    lambda2: float = 0.5,
) -> tuple[torch.Tensor, ...]:
    """AIR ``losses.py`` ACL_IR_Loss.forward (normalize=True): (loss, nat, adv, SIR, AIR)."""
    bs = zi.shape[0]
    labels = torch.zeros((2 * bs,)).long()
    mask = torch.ones((bs, bs), dtype=torch.bool).fill_diagonal_(0)
    zi_n, zj_n, zo_n = (F.normalize(z, p=2, dim=-1) for z in (zi, zj, z_orig))
    zia_n, zja_n = (F.normalize(z, p=2, dim=-1) for z in (zi_adv, zj_adv))

    def contrastive(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        l_ii = torch.mm(a, a.t()) / temperature
        l_ij = torch.mm(a, b.t()) / temperature
        l_ji = torch.mm(b, a.t()) / temperature
        l_jj = torch.mm(b, b.t()) / temperature
        pos = torch.cat((l_ij[~mask], l_ji[~mask]), dim=0).unsqueeze(1)
        neg_i = torch.cat((l_ii[mask].reshape(bs, -1), l_ij[mask].reshape(bs, -1)), dim=1)
        neg_j = torch.cat((l_ji[mask].reshape(bs, -1), l_jj[mask].reshape(bs, -1)), dim=1)
        logits = torch.cat((pos, torch.cat((neg_i, neg_j), dim=0)), dim=1)
        return F.cross_entropy(logits, labels)

    nat = contrastive(zi_n, zj_n)
    adv = contrastive(zia_n, zja_n)
    p_io = F.softmax((torch.mm(zi_n, zo_n.t()) / temperature)[~mask], -1)
    logp_jo = F.log_softmax((torch.mm(zj_n, zo_n.t()) / temperature)[~mask], -1)
    sir = F.kl_div(p_io, logp_jo, log_target=True, reduction="sum")
    cons_i = F.softmax((torch.mm(zia_n, zi_n.t()) / temperature)[~mask], -1)
    cons_j = F.softmax((torch.mm(zja_n, zj_n.t()) / temperature)[~mask], -1)
    orig_i = F.softmax((torch.mm(zia_n, zo_n.t()) / temperature)[~mask], -1)
    orig_j = F.softmax((torch.mm(zja_n, zo_n.t()) / temperature)[~mask], -1)
    p_i, p_j = orig_i * cons_i, orig_j * cons_j
    air = F.kl_div(p_i, torch.log(p_j), log_target=True, reduction="sum")
    loss = nat * (1 - weight) + adv * (1 + weight) + lambda1 * sir + lambda2 * air
    return loss, nat, adv, sir, air


def official_pgd_contrastive(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    delta0: torch.Tensor,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    iters: int = 5,
) -> torch.Tensor:
    """ACL / DynACL / AIR PGD_contrastive from a given start ``delta0`` (the official draws
    it uniform in [-eps, eps]); ``model`` maps the interleaved (2B, ...) inputs to features
    (in eval mode, the 'pgd' branch; DynACL's ``swap=True``: even rows through q, odd through
    k)."""
    delta = torch.nn.Parameter(delta0.clone())
    for _ in range(iters):
        loss = official_nt_xent(model(inputs + delta))
        (grad,) = torch.autograd.grad(loss, [delta])
        delta.data = delta.data + alpha * grad.sign()
        delta.data = torch.clamp(delta.data, min=-eps, max=eps)
        delta.data = torch.clamp(inputs + delta.data, min=0, max=1) - inputs
    return (inputs + delta).detach()


@torch.no_grad()
def official_momentum_update(
    query: list[torch.Tensor], key: list[torch.Tensor], m: float = 0.99
) -> None:
    """DynACL ``_momentum_update_encoder_k``: param_k = param_k * m + param_q * (1 - m)."""
    for param_q, param_k in zip(query, key, strict=True):
        param_k.data = param_k.data * m + param_q.data * (1.0 - m)


OFFICIAL_BN_NAMES = ("normal", "pgd")  # bn_list.0, bn_list.1


class OfficialBatchNormMultiple(nn.Module):
    """ACL ``batch_norm_multiple(norm, planes, bn_names=['normal', 'pgd'])``: ``bn_list``."""

    def __init__(self, norm: type[nn.Module], planes: int) -> None:
        super().__init__()
        self.bn_list = nn.ModuleList([norm(planes) for _ in OFFICIAL_BN_NAMES])

    def forward(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        out: torch.Tensor = self.bn_list[OFFICIAL_BN_NAMES.index(bn_name)](x)
        return out


class OfficialProjHead(nn.Module):
    """ACL ``proj_head(ch, bn_names=['normal', 'pgd'], twoLayerProj=False)``: the head of every
    official script (DynACL and AIR copy it). ``forward(x, bn_name)``: (B, ch) -> (B, ch)."""

    def __init__(self, ch: int, two_layer_proj: bool = False) -> None:
        super().__init__()
        self.two_layer_proj = two_layer_proj
        self.fc1 = nn.Linear(ch, ch)
        self.bn1 = OfficialBatchNormMultiple(nn.BatchNorm1d, ch)
        self.fc2 = nn.Linear(ch, ch, bias=False)
        self.bn2 = OfficialBatchNormMultiple(nn.BatchNorm1d, ch)
        if not two_layer_proj:
            self.fc3 = nn.Linear(ch, ch, bias=False)
            self.bn3 = OfficialBatchNormMultiple(nn.BatchNorm1d, ch)

    def forward(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        x = self.bn1(self.fc1(x), bn_name)
        x = F.relu(x)
        x = self.bn2(self.fc2(x), bn_name)
        if not self.two_layer_proj:
            x = F.relu(x)
            x = self.bn3(self.fc3(x), bn_name)
        return x
