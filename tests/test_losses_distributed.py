"""``nt_xent_loss(gather_distributed=True)`` across two real CPU processes (gloo)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robust_contrastive import nt_xent_loss

WORLD, VIEWS, BATCH, DIM = 2, 3, 4, 8


def _union_views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(WORLD * BATCH, DIM, generator=g, dtype=torch.float64) for _ in range(VIEWS)]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        local = [
            v[rank * BATCH : (rank + 1) * BATCH].clone().requires_grad_(True)
            for v in _union_views()
        ]
        loss = nt_xent_loss(*local, temperature=0.5, gather_distributed=True)
        loss.backward()
        grads = torch.stack([v.grad for v in local if v.grad is not None])
        torch.save({"loss": loss.detach(), "grads": grads}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gathered_negatives_equal_one_process_on_the_union(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    union = [v.clone().requires_grad_(True) for v in _union_views()]
    reference = nt_xent_loss(*union, temperature=0.5)
    reference.backward()

    # DistributedDataParallel averages over ranks: the mean of the ranks' losses and gradients
    # is the loss and gradient of one process holding the union of the batches.
    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert torch.allclose(mean_loss, reference.detach())
    for rank, result in enumerate(results):
        expected = torch.stack([v.grad[rank * BATCH : (rank + 1) * BATCH] for v in union])
        assert torch.allclose(result["grads"] / WORLD, expected)
