"""The NT-Xent contrastive loss of SimCLR and RoCL over any number of views (eq. 3 and 6)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange

from .validation import check_number


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sums every rank's gradient for the local slice."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)  # (world, *tensor.shape)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, *grads: torch.Tensor) -> torch.Tensor:
        grad = grads[0].contiguous()
        dist.all_reduce(grad)  # each rank's loss depends on every rank's slice
        return grad[dist.get_rank()]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Gather ``tensor`` from every process, keeping gradients to each rank's own slice.

    Args:
        tensor: (N, ...) on this rank; every rank must pass the same shape.

    Returns:
        (world_size, N, ...) with this rank's slice at index ``dist.get_rank()``. Without an
        initialised process group, returns ``tensor[None]``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor.unsqueeze(0)
    out: torch.Tensor = _GatherWithGrad.apply(tensor)
    return out


def nt_xent_loss(
    *views: torch.Tensor, temperature: float = 0.5, gather_distributed: bool = False
) -> torch.Tensor:
    """NT-Xent loss with V >= 2 views; rows with the same index are positives of each other.

    With z_a the L2-normalised rows of all V*B views and s(a, k) = z_a . z_k / T,

        loss = 1/(V B) * sum_a sum_{p in P(a)} -log( exp(s(a, p)) / sum_{k != a} exp(s(a, k)) )

    where P(a) are the V - 1 other views of the same image. For V = 2 this is SimCLR's loss;
    for V = 3 with views (t(x), t'(x), t(x)^adv) it is L_RoCL of eq. (6), the form used by the
    original implementation (every pair among the three views a positive, every other image a
    negative). Gradients flow through both sides of the similarity matrix.

    Args:
        *views: V tensors of shape (B, D), one per view, rows aligned by image.
        temperature: tau of eq. (3); the paper uses 0.5.
        gather_distributed: also use the rows of every other process as negatives (and their
            positives), gathered with gradients; the anchors are this process's rows. Requires
            an initialised ``torch.distributed`` process group and equal B on every rank.

    Returns:
        Scalar loss (mean over this process's V*B anchors).

    Raises:
        TypeError: a view is not a floating-point tensor, or the temperature not a number.
        ValueError: fewer than 2 views, views that are not (B, D) with D >= 1, views of
            different shapes or devices, B < 2 (without ``gather_distributed``), or a
            temperature that is not a finite number > 0. The values are not inspected (that
            would cost a host synchronisation per step): NaN or inf inputs give a NaN loss,
            which [`RoCLTrainer`][robust_contrastive.RoCLTrainer] reports as a
            ``NonFiniteLossError``.
    """
    if len(views) < 2:
        raise ValueError(f"nt_xent_loss needs at least 2 views, got {len(views)}.")
    for v in views:
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            got = v.dtype if isinstance(v, torch.Tensor) else type(v).__name__
            raise TypeError(
                f"views must be floating-point tensors (B, D) (the projector's outputs), got {got}."
            )
    first = views[0]
    if first.dim() != 2 or first.shape[1] == 0:
        raise ValueError(
            f"views must be (B, D) tensors with D >= 1, got shape {tuple(first.shape)}."
        )
    for v in views[1:]:
        if v.shape != first.shape:
            raise ValueError(
                f"all views must have the same shape (B, D); got {tuple(first.shape)} and "
                f"{tuple(v.shape)}: each view holds one row per image of the same batch."
            )
        if v.device != first.device:
            raise ValueError(f"all views must be on one device; got {first.device} and {v.device}.")
    if first.shape[0] < 2 and not gather_distributed:
        raise ValueError(
            "a contrastive loss needs at least 2 images per batch (the others are negatives); "
            f"got B={first.shape[0]}."
        )
    check_number("temperature", temperature, positive=True, example="0.5")

    num_views, batch = len(views), first.shape[0]
    z = F.normalize(torch.stack(views), dim=-1)  # (V, B, D)
    anchors = rearrange(z, "v b d -> (v b) d")  # (V*B, D)
    if gather_distributed and dist.is_available() and dist.is_initialized():
        gathered = gather_with_grad(z)  # (W, V, B, D)
        rank = dist.get_rank()
        keys = rearrange(gathered, "w v b d -> (w v b) d")  # (W*V*B, D)
    else:
        rank = 0
        keys = anchors

    logits = anchors @ keys.T / temperature  # (V*B, W*V*B)
    # Index of each anchor's own row among the keys, and of its positives.
    view_idx = torch.arange(num_views, device=z.device).repeat_interleave(batch)  # (V*B,)
    item_idx = torch.arange(batch, device=z.device).repeat(num_views)  # (V*B,)
    self_col = (rank * num_views + view_idx) * batch + item_idx  # (V*B,)
    logits = logits.scatter(1, self_col.unsqueeze(1), float("-inf"))  # exclude k = a
    log_denominator = torch.logsumexp(logits, dim=1)  # (V*B,)

    # Positive similarities: sum over the V-1 other views of the same image.
    sims = torch.einsum("vbd,wbd->bvw", z, z) / temperature  # (B, V, V)
    off_diagonal = ~torch.eye(num_views, dtype=torch.bool, device=z.device)
    # Sum over anchors and their positives (masked, not indexed: no host synchronisation).
    positive_sum = sims.masked_fill(~off_diagonal, 0.0).sum()
    return ((num_views - 1) * log_denominator.sum() - positive_sum) / (num_views * batch)
