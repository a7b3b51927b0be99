from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robust_contrastive import nt_xent_loss


def naive_loss(views: list[torch.Tensor], temperature: float) -> float:
    """RoCL's definition, written as a double loop over anchors and positives."""
    rows = [F.normalize(v, dim=1) for v in views]
    num_views, batch = len(rows), rows[0].shape[0]
    flat = [(v, i) for v in range(num_views) for i in range(batch)]

    def sim(a: tuple[int, int], k: tuple[int, int]) -> float:
        return float(rows[a[0]][a[1]] @ rows[k[0]][k[1]]) / temperature

    total = 0.0
    for anchor in flat:
        denominator = sum(math.exp(sim(anchor, k)) for k in flat if k != anchor)
        for positive in flat:
            if positive != anchor and positive[1] == anchor[1]:
                total += -math.log(math.exp(sim(anchor, positive)) / denominator)
    return total / (num_views * batch)


@pytest.mark.parametrize("num_views", [2, 3])
@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_equals_naive_double_loop(num_views: int, temperature: float) -> None:
    g = torch.Generator().manual_seed(num_views)
    views = [torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(num_views)]
    expected = naive_loss(views, temperature)
    got = nt_xent_loss(*views, temperature=temperature)
    assert got.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("num_views", [2, 3])
def test_closed_form_on_orthogonal_images(num_views: int) -> None:
    # Every view of image i is the basis vector e_i: positives have similarity 1, negatives 0.
    batch, temperature = 4, 0.5
    views = [torch.eye(batch, dtype=torch.float64) for _ in range(num_views)]
    positive = math.exp(1 / temperature)
    denominator = (num_views - 1) * positive + (num_views * batch - num_views) * 1.0
    expected = (num_views - 1) * -math.log(positive / denominator)
    assert nt_xent_loss(*views, temperature=temperature).item() == pytest.approx(expected)


def test_is_scale_invariant_and_permutation_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(6, 8, generator=g) for _ in range(3))
    base = nt_xent_loss(a, b, c)
    assert nt_xent_loss(3 * a, b, 0.5 * c).item() == pytest.approx(base.item(), rel=1e-5)
    perm = torch.randperm(6, generator=g)
    assert nt_xent_loss(a[perm], b[perm], c[perm]).item() == pytest.approx(base.item(), rel=1e-5)
    # Positives are defined by row index: shuffling one view alone changes the loss.
    assert nt_xent_loss(a, b[perm], c).item() != pytest.approx(base.item(), rel=1e-5)


def test_gradients_flow_through_both_sides() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 5, generator=g, requires_grad=True)
    b = torch.randn(4, 5, generator=g, requires_grad=True)
    nt_xent_loss(a, b).backward()
    assert a.grad is not None
    assert b.grad is not None
    assert a.grad.abs().sum() > 0
    assert b.grad.abs().sum() > 0

    # Gradient check in float64 against finite differences.
    a64 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b64 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: nt_xent_loss(x, y, temperature=0.3), (a64, b64))


def test_matches_simclr_cross_entropy_form() -> None:
    # For two views the loss equals the usual cross-entropy formulation of NT-Xent.
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    z = F.normalize(torch.cat((a, b)), dim=1)
    logits = z @ z.T / 0.5
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat((torch.arange(6, 12), torch.arange(0, 6)))
    expected = F.cross_entropy(logits, targets)
    assert nt_xent_loss(a, b).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("views", "message"),
    [
        ((torch.randn(4, 3),), "at least 2 views"),
        ((torch.randn(4, 3), torch.randn(5, 3)), "same shape"),
        ((torch.randn(1, 3), torch.randn(1, 3)), "at least 2 images"),
        ((torch.randn(4, 3, 2), torch.randn(4, 3, 2)), r"\(B, D\)"),
    ],
)
def test_bad_input(views: tuple[torch.Tensor, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nt_xent_loss(*views)


def test_rejects_non_positive_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.randn(3, 2), torch.randn(3, 2), temperature=0.0)
