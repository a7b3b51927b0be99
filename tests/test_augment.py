from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from robust_contrastive import SimCLRAugmentation
from robust_contrastive.augment import _rgb_to_hsv


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randint(
        0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_output_range_shape_and_device(batch: torch.Tensor) -> None:
    out = SimCLRAugmentation()(batch, torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 32, 32)
    assert out.dtype == torch.float32
    assert out.min() >= 0
    assert out.max() <= 1
    assert SimCLRAugmentation(size=24)(batch).shape == (64, 3, 24, 24)
    assert SimCLRAugmentation(size=None)(batch[:, :, :20, :28]).shape == (64, 3, 20, 28)


def test_every_image_gets_its_own_parameters() -> None:
    params = SimCLRAugmentation().sample_params(
        256, 32, 32, generator=torch.Generator().manual_seed(0)
    )
    assert params.crop.unique(dim=0).shape[0] > 200  # crops differ image to image
    assert params.factors.unique(dim=0).shape[0] == 256
    assert params.order.unique(dim=0).shape[0] > 12  # many of the 24 jitter orders
    for name, p in (("flip", 0.5), ("jitter", 0.8), ("grayscale", 0.2)):
        rate = getattr(params, name).float().mean().item()
        assert abs(rate - p) < 0.1, name
    # Crops respect RandomResizedCrop's ranges and fit in the image.
    top, left, h, w = params.crop.unbind(1)
    assert (top >= 0).all()
    assert (left >= 0).all()
    assert (top + h <= 32).all()
    assert (left + w <= 32).all()
    assert (h * w >= 0.08 * 1024 * 0.8).all()  # rounding of h and w loosens the bound a bit


def test_same_image_gets_different_views() -> None:
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(16, -1, -1, -1)
    out = SimCLRAugmentation()(image, torch.Generator().manual_seed(1))
    distinct = {tuple(v.flatten()[:64].tolist()) for v in out}
    assert len(distinct) == 16


def test_reproducible_with_generator(batch: torch.Tensor) -> None:
    aug = SimCLRAugmentation()
    a = aug(batch, torch.Generator().manual_seed(7))
    b = aug(batch, torch.Generator().manual_seed(7))
    c = aug(batch, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_identity_settings_return_the_input(batch: torch.Tensor) -> None:
    aug = SimCLRAugmentation(scale=(1, 1), ratio=(1, 1), jitter_p=0, grayscale_p=0, flip_p=0)
    x = batch.float() / 255
    assert torch.allclose(aug(x), x, atol=1e-5)


def test_flip_only_matches_torch_flip(batch: torch.Tensor) -> None:
    aug = SimCLRAugmentation(scale=(1, 1), ratio=(1, 1), jitter_p=0, grayscale_p=0, flip_p=1)
    x = batch.float() / 255
    assert torch.allclose(aug(x), x.flip(-1), atol=1e-5)


def test_grayscale_only_gives_equal_channels(batch: torch.Tensor) -> None:
    aug = SimCLRAugmentation(scale=(1, 1), ratio=(1, 1), jitter_p=0, grayscale_p=1, flip_p=0)
    out = aug(batch)
    assert torch.allclose(out[:, 0], out[:, 1])
    assert torch.allclose(out[:, 1], out[:, 2])
    assert torch.allclose(out[:, :1], TF.rgb_to_grayscale(batch.float() / 255), atol=1e-5)


@pytest.mark.parametrize("op", [0, 1, 2, 3])
def test_each_jitter_operation_matches_torchvision(batch: torch.Tensor, op: int) -> None:
    x = batch[:8].float() / 255
    aug = SimCLRAugmentation(scale=(1, 1), ratio=(1, 1), grayscale_p=0, flip_p=0, jitter_p=1)
    params = aug.sample_params(8, 32, 32, generator=torch.Generator().manual_seed(op))
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0])
    factors = identity.repeat(8, 1)
    factors[:, op] = params.factors[:, op]
    params = type(params)(
        params.crop, params.flip, params.jitter, factors, params.order, params.grayscale
    )
    ours = aug.apply(x, params)
    reference = {
        0: TF.adjust_brightness,
        1: TF.adjust_contrast,
        2: TF.adjust_saturation,
        3: TF.adjust_hue,
    }[op]
    expected = torch.stack([reference(img, float(f)) for img, f in zip(x, factors[:, op])])
    assert torch.allclose(ours, expected, atol=1e-4)


def test_hsv_round_trip(batch: torch.Tensor) -> None:
    x = batch.float() / 255
    assert torch.allclose(SimCLRAugmentation._shift_hue(x, torch.zeros(64)), x, atol=1e-5)
    assert _rgb_to_hsv(x).min() >= 0
    assert _rgb_to_hsv(x).max() <= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": (0.0, 1.0)}, "scale"),
        ({"ratio": (2.0, 1.0)}, "ratio"),
        ({"brightness": 1.5}, "brightness"),
        ({"hue": 0.6}, "hue"),
        ({"jitter_p": 1.2}, "probability"),
        ({"size": 0}, "size"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimCLRAugmentation(**kwargs)  # type: ignore[arg-type]


def test_bad_images() -> None:
    aug = SimCLRAugmentation()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        aug(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="uint8 or float"):
        aug(torch.ones(2, 3, 32, 32, dtype=torch.int64))
    # A generator on another device than the images (meta tensors stand in for a GPU).
    with pytest.raises(ValueError, match=r"the generator is on cpu but the images are on meta"):
        aug(torch.zeros(2, 3, 32, 32, device="meta"), torch.Generator())


def test_original_view_converts_and_resizes_only_when_needed() -> None:
    from robust_contrastive.augment import original_view

    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    same = original_view(images, 8)
    assert torch.equal(same, images.float() / 255)  # no resize at the views' size
    resized = original_view(images, 16)
    assert resized.shape == (2, 3, 16, 16)
    assert float(resized.min()) >= 0
    assert float(resized.max()) <= 1
