"""The original networks of ACL / DynACL / AIR, DeACL and AdvCL, re-implemented in their own
checkpoint layouts (module and key names), for the conversion tests.

Written from the official files: ACL ``models/resnet_multi_bn.py`` (VITA-Group/
Adversarial-Contrastive-Learning; DynACL and AIR keep it), solo-learn's
``solo/models/resnet_add_normalize.py`` with the CIFAR surgery of DeACL's
``solo/methods/base_for_adversarial_training.py`` (pantheon5100/DeACL), and AdvCL's
``models/resnet_cifar_multibn_ensembleFC.py`` (LijieFan/AdvCL). The width is a parameter (the
originals fix 64) so that the tests run on tiny networks; everything else follows the files:

- ACL: a ``NormalizeByChannelMeanStd`` module (ImageNet statistics, persistent buffers), a 3x3
  stride-1 padding-1 stem, ``batch_norm_multiple`` BatchNorms (``bn_list.0`` = ``'normal'``,
  ``bn_list.1`` = ``'pgd'``), ``Downsample_multiple`` shortcuts (``downsample.conv``,
  ``downsample.bn``) and the ``proj_head`` ``fc`` (``fc1``/``bn1``, ``fc2``/``bn2``,
  ``fc3``/``bn3``, dual BatchNorm1d); DynACL's ``resnet18_momentum`` holds two of them
  (``encoder_q``, ``encoder_k``);
- DeACL: torchvision BasicBlocks (``downsample.0`` / ``downsample.1``), a ``normalize`` module
  with CIFAR-10 statistics, conv1 replaced by a 3x3 stride-1 convolution with padding 2, max-pool
  and ``fc`` identities, inside a Lightning-style module (``backbone``, ``momentum_backbone``,
  ``projector``, ``momentum_projector``, ``classifier``, ``classifier_adv``);
- AdvCL: the multi-BatchNorm network with three branches (``'normal'``, ``'pgd'``,
  ``'pgd_ce'``), no normalisation, heads ``fc_002..fc_500``, ``head_ce``, ``head_proj``,
  ``head_pred``, saved from a ``DataParallel`` (``module.`` prefixes).

``features(x, bn_name)`` returns the pooled features the authors' evaluations use (ACL:
``return_features``, AdvCL: ``return_feat=True``; DeACL: the backbone's output).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SOLO_CIFAR_MEAN, SOLO_CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)


class NormalizeByChannelMeanStd(nn.Module):
    """Subtract a per-channel mean and divide by a std, stored as (persistent) buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[None, :, None, None]) / self.std[None, :, None, None]


class BatchNormMultiple(nn.Module):
    """``batch_norm_multiple``: one BatchNorm per branch name, in ``bn_list``."""

    def __init__(self, norm: type[nn.Module], planes: int, bn_names: tuple[str, ...]) -> None:
        super().__init__()
        self.bn_list = nn.ModuleList([norm(planes) for _ in bn_names])
        self.index = {name: i for i, name in enumerate(bn_names)}

    def forward(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        out: torch.Tensor = self.bn_list[self.index[bn_name]](x)
        return out


class DownsampleMultiple(nn.Module):
    """``Downsample_multiple``: a strided 1x1 ``conv`` and a multi-branch ``bn``."""

    def __init__(self, inplanes: int, planes: int, stride: int, bn_names: tuple[str, ...]):
        super().__init__()
        self.conv = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
        self.bn = BatchNormMultiple(nn.BatchNorm2d, planes, bn_names)

    def forward(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        out: torch.Tensor = self.bn(self.conv(x), bn_name)
        return out


class MultiBNBasicBlock(nn.Module):
    """The BasicBlock of ``resnet_multi_bn.py``: BatchNorms picked by branch name."""

    def __init__(self, inplanes: int, planes: int, stride: int, bn_names: tuple[str, ...]):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNormMultiple(nn.BatchNorm2d, planes, bn_names)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = BatchNormMultiple(nn.BatchNorm2d, planes, bn_names)
        self.downsample = (
            DownsampleMultiple(inplanes, planes, stride, bn_names)
            if stride != 1 or inplanes != planes
            else None
        )

    def forward(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x), bn_name))
        out = self.bn2(self.conv2(out), bn_name)
        identity = x if self.downsample is None else self.downsample(x, bn_name)
        return F.relu(out + identity)


class MultiBNResNet18(nn.Module):
    """The trunk shared by ACL's and AdvCL's networks: stem, four stages, adaptive pooling."""

    def __init__(self, width: int, bn_names: tuple[str, ...]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = BatchNormMultiple(nn.BatchNorm2d, width, bn_names)
        inplanes = width
        for i, stride in enumerate((1, 2, 2, 2), start=1):
            planes = width * 2 ** (i - 1)
            blocks = [
                MultiBNBasicBlock(inplanes, planes, stride, bn_names),
                MultiBNBasicBlock(planes, planes, 1, bn_names),
            ]
            setattr(self, f"layer{i}", nn.ModuleList(blocks))
            inplanes = planes
        self.feature_dim = inplanes

    def trunk(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x), bn_name))
        for i in range(1, 5):
            for block in getattr(self, f"layer{i}"):
                x = block(x, bn_name)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class ProjHead(nn.Module):
    """ACL's ``proj_head``: fc1 (with bias), fc2, fc3 (without), each with a dual BatchNorm1d."""

    def __init__(self, ch: int, bn_names: tuple[str, ...]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(ch, ch)
        self.bn1 = BatchNormMultiple(nn.BatchNorm1d, ch, bn_names)
        self.fc2 = nn.Linear(ch, ch, bias=False)
        self.bn2 = BatchNormMultiple(nn.BatchNorm1d, ch, bn_names)
        self.fc3 = nn.Linear(ch, ch, bias=False)
        self.bn3 = BatchNormMultiple(nn.BatchNorm1d, ch, bn_names)


class ACLResNet18(MultiBNResNet18):
    """ACL / DynACL / AIR's ResNet18 (``resnet18(bn_names=['normal', 'pgd'])`` with
    ``model.fc = proj_head(...)``)."""

    def __init__(self, width: int, bn_names: tuple[str, ...] = ("normal", "pgd")) -> None:
        super().__init__(width, bn_names)
        self.normalize = NormalizeByChannelMeanStd(IMAGENET_MEAN, IMAGENET_STD)
        self.fc = ProjHead(self.feature_dim, bn_names)

    def features(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        return self.trunk(self.normalize(x), bn_name)


class DynACLMomentum(nn.Module):
    """DynACL's ``resnet18_momentum`` (``models/resnet_multi_bn.py`` of PKU-ML/DYNACL): two ACL
    networks, ``encoder_q`` and the momentum encoder ``encoder_k``, each with its ``proj_head``
    ``fc`` (``train_DynACL.py``); DynACL evaluates ``encoder_k``."""

    def __init__(self, width: int, bn_names: tuple[str, ...] = ("normal", "pgd")) -> None:
        super().__init__()
        self.encoder_q = ACLResNet18(width, bn_names)
        self.encoder_k = ACLResNet18(width, bn_names)


class AdvCLResNet18(MultiBNResNet18):
    """AdvCL's ResNet18 (``resnet18(bn_names=['normal', 'pgd', 'pgd_ce'])``): no normalisation,
    the ensemble of pseudo-label classifiers and the three heads."""

    def __init__(self, width: int, bn_names: tuple[str, ...] = ("normal", "pgd", "pgd_ce")) -> None:
        super().__init__(width, bn_names)
        dim = self.feature_dim
        for classes in (2, 10, 50, 100, 500):
            setattr(self, f"fc_{classes:03d}", nn.Linear(dim, classes))

        def mlp(d_in: int, d_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(d_in, d_in), nn.BatchNorm1d(d_in), nn.ReLU(), nn.Linear(d_in, d_out)
            )

        self.head_ce, self.head_proj, self.head_pred = mlp(dim, 10), mlp(dim, 128), mlp(128, 128)

    def features(self, x: torch.Tensor, bn_name: str) -> torch.Tensor:
        return self.trunk(x, bn_name)


class TorchvisionBasicBlock(nn.Module):
    """torchvision's BasicBlock (``downsample`` an ``nn.Sequential(conv1x1, BatchNorm2d)``)."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
            if stride != 1 or inplanes != planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class SoloCifarResNet18(nn.Module):
    """solo-learn's ``resnet18_NormalizeInput`` after DeACL's CIFAR surgery: conv1 a 3x3
    stride-1 convolution with padding 2, max-pool and fc identities."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.Identity()
        inplanes = width
        for i, stride in enumerate((1, 2, 2, 2), start=1):
            planes = width * 2 ** (i - 1)
            layer = nn.Sequential(
                TorchvisionBasicBlock(inplanes, planes, stride),
                TorchvisionBasicBlock(planes, planes, 1),
            )
            setattr(self, f"layer{i}", layer)
            inplanes = planes
        self.fc = nn.Identity()
        self.normalize = NormalizeByChannelMeanStd(SOLO_CIFAR_MEAN, SOLO_CIFAR_STD)
        self.inplanes = inplanes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(self.normalize(x)))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        out: torch.Tensor = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return out


class DeACLModule(nn.Module):
    """The modules of DeACL's ``MoCoV2KDAT`` Lightning module that hold weights: the student
    ``backbone``, the teacher ``momentum_backbone``, identity projectors (``projector_ablation
    = 'remove'``) and the online ``classifier`` / ``classifier_adv``."""

    def __init__(self, width: int, num_classes: int = 10) -> None:
        super().__init__()
        self.backbone = SoloCifarResNet18(width)
        self.momentum_backbone = SoloCifarResNet18(width)
        self.projector = nn.Identity()
        self.momentum_projector = nn.Identity()
        self.classifier = nn.Linear(self.backbone.inplanes, num_classes)
        self.classifier_adv = nn.Linear(self.backbone.inplanes, num_classes)


def randomize(model: nn.Module, seed: int) -> None:
    """Random weights and BatchNorm statistics (every branch its own), so that a wrong branch, a
    wrong normalisation or a wrong padding changes the features."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                assert module.running_mean is not None
                assert module.running_var is not None
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
                module.running_mean.copy_(
                    0.2 * torch.randn(module.running_mean.shape, generator=generator)
                )
                module.running_var.copy_(
                    0.5 + torch.rand(module.running_var.shape, generator=generator)
                )
                if module.num_batches_tracked is not None:
                    module.num_batches_tracked.fill_(7)


def save_acl_checkpoint(model: ACLResNet18, path: Path) -> None:
    """As ``train_simCLR.py``'s ``save_checkpoint``: ``{'epoch', 'state_dict', 'optim'}``."""
    optim = {"state": {}, "param_groups": [{"lr": 5.0, "weight_decay": 1e-6, "params": [0, 1]}]}
    torch.save({"epoch": 1000, "state_dict": model.state_dict(), "optim": optim}, path)


def save_dynacl_checkpoint(model: DynACLMomentum, path: Path) -> None:
    """As ``train_DynACL.py``'s ``model.pt``: ``{'epoch', 'state_dict', 'optim'}`` of the whole
    ``resnet18_momentum`` (``encoder_q.*`` and ``encoder_k.*``)."""
    optim = {"state": {}, "param_groups": [{"lr": 0.5, "weight_decay": 1e-4, "params": [0]}]}
    torch.save({"epoch": 1000, "state_dict": model.state_dict(), "optim": optim}, path)


def save_advcl_checkpoint(model: AdvCLResNet18, path: Path) -> None:
    """As ``pretraining_advCL.py``'s ``checkpoint``: the ``DataParallel`` model's state dict."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model": state, "epoch": 1000, "rng_state": torch.get_rng_state()}, path)


def save_lightning_checkpoint(
    module: DeACLModule, path: Path, hyper_parameters: object | None = None
) -> None:
    """A PyTorch Lightning checkpoint of the module: its ``state_dict`` among Lightning's other
    entries, the hyper-parameters a non-tensor object (Lightning stores an ``AttributeDict``)."""
    hparams = hyper_parameters or argparse.Namespace(
        backbone="resnet18", method="mocov2_kd_at", trades_k=2.0, lr_decay_steps=None
    )
    torch.save(
        {
            "epoch": 99,
            "global_step": 9800,
            "pytorch-lightning_version": "1.5.10",
            "state_dict": module.state_dict(),
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 100}}}},
            "callbacks": {},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.5, "params": [0]}]}],
            "lr_schedulers": [{"last_epoch": 100, "base_lrs": [0.5]}],
            "hparams_name": "kwargs",
            "hyper_parameters": hparams,
        },
        path,
    )
