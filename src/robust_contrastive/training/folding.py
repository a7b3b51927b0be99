"""Eval-mode BatchNorm folded into the preceding convolutions, for the attack's passes.

In eval mode a BatchNorm is the affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta``.
Folded into the convolution before it (``W' = W * s``, ``b' = beta - mean * s`` with
``s = gamma / sqrt(var + eps)``), the network computes the same function (up to float rounding)
without BatchNorm kernels in the forward and input-gradient passes, where the attack spends its
time; refreshing the folded copy is one cheap pass over the parameters, done every training step.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# (convolution, BatchNorm) attribute pairs of RoCLEncoder and its residual blocks.
_NAMED_PAIRS: tuple[tuple[str, str], ...] = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _conv_bn_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """``(parent, conv name, bn name)`` of every convolution whose output feeds a BatchNorm:
    the named pairs of a block, and consecutive (Conv2d, BatchNorm) children of a Sequential
    (the projection shortcuts), in a deterministic order."""
    for parent in model.modules():
        if isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            for (conv_name, conv), (bn_name, bn) in itertools.pairwise(children):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm):
                    yield parent, conv_name, bn_name
        else:
            for conv_name, bn_name in _NAMED_PAIRS:
                first, second = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
                if isinstance(first, nn.Conv2d) and isinstance(second, _BatchNorm):
                    yield parent, conv_name, bn_name


class FoldedEncoder:
    """An eval-mode copy of an encoder with every BatchNorm folded into its convolution.

    Args:
        source: the encoder (e.g. a [`RoCLEncoder`][robust_contrastive.RoCLEncoder]); it is
            not modified. Its BatchNorms must track running statistics.

    Attributes:
        module: the folded copy, (B, 3, H, W) -> (B, F) like ``source`` in eval mode. Its
            parameters do not require gradients (an attack differentiates w.r.t. the input
            only), and they live on the source's device in the source's memory format.

    Call [`refresh`][robust_contrastive.training.folding.FoldedEncoder.refresh] after every change
    of the source's weights (each optimiser step) before using ``module``.

    Raises:
        ValueError: a BatchNorm of ``source`` does not directly follow a convolution, or does
            not track running statistics (it would not be an affine map in eval mode).
    """

    def __init__(self, source: nn.Module) -> None:
        self.source = source
        self.module = copy.deepcopy(source).eval()
        # (folded weight, folded bias, source conv, source bn) per pair; the rest is copied.
        self._folded: list[tuple[torch.Tensor, torch.Tensor, nn.Conv2d, _BatchNorm]] = []
        src_pairs = list(_conv_bn_pairs(source))
        dst_pairs = list(_conv_bn_pairs(self.module))
        for (src_parent, conv_name, bn_name), (dst_parent, _, _) in zip(src_pairs, dst_pairs):
            conv, bn = getattr(src_parent, conv_name), getattr(src_parent, bn_name)
            if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
                raise ValueError(f"cannot fold {bn}: it does not track running statistics.")
            folded = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,  # type: ignore[arg-type]
                stride=conv.stride,  # type: ignore[arg-type]
                padding=conv.padding,  # type: ignore[arg-type]
                dilation=conv.dilation,  # type: ignore[arg-type]
                groups=conv.groups,
                bias=True,
                padding_mode=conv.padding_mode,
            )
            # empty_like keeps the device, dtype and memory format (channels_last) of conv.
            weight = nn.Parameter(torch.empty_like(conv.weight), requires_grad=False)
            bias = nn.Parameter(torch.empty_like(bn.running_mean), requires_grad=False)
            folded.weight, folded.bias = weight, bias
            setattr(dst_parent, conv_name, folded)
            setattr(dst_parent, bn_name, nn.Identity())
            self._folded.append((weight, bias, conv, bn))
        left = [name for name, m in self.module.named_modules() if isinstance(m, _BatchNorm)]
        if left:
            raise ValueError(
                f"cannot fold the BatchNorm(s) {left}: each must directly follow a Conv2d."
            )
        folded_ids = {id(t) for w, b, _, _ in self._folded for t in (w, b)}
        dst: dict[str, torch.Tensor] = dict(self.module.named_parameters())
        dst.update(self.module.named_buffers())
        src: dict[str, torch.Tensor] = dict(source.named_parameters())
        src.update(source.named_buffers())
        # Tensors outside the folded pairs (e.g. normalisation buffers): copied at refresh.
        self._copied = [(dst[k], src[k]) for k in dst if id(dst[k]) not in folded_ids]
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the folded weights from the source's current weights and statistics."""
        for weight, bias, conv, bn in self._folded:
            mean, var = bn.running_mean, bn.running_var
            assert mean is not None  # checked in __init__
            assert var is not None
            scale = torch.rsqrt(var + bn.eps)  # (C,)
            if bn.weight is not None:
                scale = scale * bn.weight
            weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))  # (C, C_in, k, k)
            shift = -mean * scale
            bias.copy_(shift if bn.bias is None else shift + bn.bias)  # (C,)
            if conv.bias is not None:
                bias.add_(conv.bias * scale)
        for dst, src in self._copied:
            dst.copy_(src)
