"""Shared fixtures: tiny models and synthetic images that keep the suite fast on a CPU."""

from __future__ import annotations

import os

# Tiny models gain nothing from intra-op threads, and two OpenMP threads stall badly when another
# process holds a core: one thread per process (subprocesses of the tests included).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from robust_contrastive import ProjectionHead, RoCLEncoder

torch.set_num_threads(1)


@pytest.fixture
def tiny_encoder() -> RoCLEncoder:
    torch.manual_seed(0)
    return RoCLEncoder("resnet18", width=4)


@pytest.fixture
def tiny_projector(tiny_encoder: RoCLEncoder) -> ProjectionHead:
    torch.manual_seed(1)
    return ProjectionHead(tiny_encoder.feature_dim, 32, 16)


@pytest.fixture
def images() -> torch.Tensor:
    """(8, 3, 16, 16) float in [0, 1]."""
    return torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
