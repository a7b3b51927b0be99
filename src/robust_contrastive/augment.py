"""Batched augmentations, on the images' own device: SimCLR's for CIFAR, and the random crop +
flip of adversarial training.

RoCL's views t(x), t'(x) come from (in the original's order) ``ColorJitter(0.4, 0.4, 0.4, 0.1)``
with p=0.8, ``RandomGrayscale(p=0.2)``, ``RandomHorizontalFlip()`` and ``RandomResizedCrop(32)``.
Every image's parameters come from one set of batched draws and are applied with tensor
operations (crop, resize and flip are one ``grid_sample``): no loop over images, no host
synchronisation, no PIL. [`random_crop_flip`][robust_contrastive.augment.random_crop_flip] is the
standard augmentation of adversarial training (AT, TRADES, DeACL);
[`original_view`][robust_contrastive.augment.original_view] is the un-augmented image at the
views' size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .validation import check_generator

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # luma weights of torchvision's rgb_to_grayscale
_ATTEMPTS = 10  # RandomResizedCrop's number of tries before its centre-crop fallback


@dataclass(frozen=True)
class AugmentationParams:
    """The random parameters of one batch (B images); tensors on the batch's device.

    Attributes:
        crop: (B, 4) float ``(top, left, height, width)`` in input pixels.
        flip: (B,) bool, horizontal flip.
        jitter: (B,) bool, whether colour jitter is applied.
        factors: (B, 4) float: brightness, contrast, saturation factors and hue shift.
        order: (B, 4) int64, the order in which the four jitter operations are applied
            (0 brightness, 1 contrast, 2 saturation, 3 hue), a permutation per image.
        grayscale: (B,) bool.
    """

    crop: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor
    grayscale: torch.Tensor


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    w = _GRAY_WEIGHTS
    return (w[0] * r + w[1] * g + w[2] * b).unsqueeze(1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (torchvision's formulas)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) HSV in [0, 1] -> RGB in [0, 1] (torchvision's formulas)."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    mask = i.unsqueeze(1) == torch.arange(6, device=i.device).view(-1, 1, 1)  # (B, 6, H, W)
    a1 = torch.stack((v, q, p, p, t, v), dim=1)
    a2 = torch.stack((t, v, v, q, p, p), dim=1)
    a3 = torch.stack((p, p, t, v, v, q), dim=1)
    a4 = torch.stack((a1, a2, a3), dim=1)  # (B, 3, 6, H, W)
    return torch.einsum("bijk,bxijk->bxjk", mask.to(x.dtype), a4)


class SimCLRAugmentation:
    """Batched SimCLR augmentation with per-image random parameters.

    Args:
        size: output side length (``RandomResizedCrop(size)``; 32 for CIFAR). ``None`` keeps the
            input size.
        scale: range of the crop's area as a fraction of the image (torchvision's default).
        ratio: range of the crop's aspect ratio.
        brightness: jitter strength s, factor uniform in [1 - s, 1 + s] (0.4).
        contrast: jitter strength s, factor uniform in [1 - s, 1 + s] (0.4).
        saturation: jitter strength s, factor uniform in [1 - s, 1 + s] (0.4).
        hue: hue shift uniform in [-hue, hue] (at most 0.5).
        jitter_p: probability of applying colour jitter (0.8).
        grayscale_p: probability of converting to grayscale (0.2).
        flip_p: probability of a horizontal flip (0.5).

    Call:
        ``augment(images, generator=None)``: images (B, 3, H, W) uint8 or float in [0, 1], on
        any device -> (B, 3, size, size) float in [0, 1] on the same device. With a generator
        (on the images' device) the result is reproducible.
    """

    def __init__(
        self,
        size: int | None = 32,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        flip_p: float = 0.5,
    ) -> None:
        if size is not None and size < 1:
            raise ValueError(f"size must be a positive integer or None, got {size}.")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}.")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}.")
        for name, s in zip(
            ("brightness", "contrast", "saturation"), (brightness, contrast, saturation)
        ):
            if not 0 <= s <= 1:
                raise ValueError(f"{name} strength must be in [0, 1], got {s}.")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}.")
        for name, p in (("jitter_p", jitter_p), ("grayscale_p", grayscale_p), ("flip_p", flip_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}.")
        self.size = size
        self.scale = scale
        self.ratio = ratio
        self.strengths = (brightness, contrast, saturation, hue)
        self.jitter_p = jitter_p
        self.grayscale_p = grayscale_p
        self.flip_p = flip_p

    def __repr__(self) -> str:
        b, c, s, h = self.strengths
        return (
            f"SimCLRAugmentation(size={self.size}, scale={self.scale}, brightness={b}, "
            f"contrast={c}, saturation={s}, hue={h}, jitter_p={self.jitter_p}, "
            f"grayscale_p={self.grayscale_p}, flip_p={self.flip_p})"
        )

    def sample_params(
        self,
        batch: int,
        height: int,
        width: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> AugmentationParams:
        """Draw the parameters of ``batch`` images of size ``height`` x ``width``."""

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=device)

        # RandomResizedCrop: ten candidate boxes per image, the first that fits wins.
        area = height * width
        target_area = area * (
            self.scale[0] + (self.scale[1] - self.scale[0]) * rand(batch, _ATTEMPTS)
        )
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * rand(batch, _ATTEMPTS))
        w = torch.sqrt(target_area * aspect).round()  # (B, 10)
        h = torch.sqrt(target_area / aspect).round()
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.to(torch.int64).argmax(dim=1, keepdim=True)  # (B, 1), 0 when none fits
        w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)  # (B,)
        top = torch.floor(rand(batch) * (height - h + 1))
        left = torch.floor(rand(batch) * (width - w + 1))
        # Fallback (no candidate fits): the largest centred crop within the ratio range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = float(width), float(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw, fh = float(round(height * self.ratio[1])), float(height)
        else:
            fw, fh = float(width), float(height)
        any_fit = fits.any(dim=1)
        fallback = ((height - fh) // 2, (width - fw) // 2, fh, fw)
        boxes = zip((top, left, h, w), fallback)
        crop = torch.stack(
            [torch.where(any_fit, v, torch.full_like(v, f)) for v, f in boxes], dim=1
        )  # (B, 4)

        b, c, s, hue = self.strengths
        lo = (1 - b, 1 - c, 1 - s, -hue)
        span = (2 * b, 2 * c, 2 * s, 2 * hue)
        flip = rand(batch) < self.flip_p  # drawn in this order: flip, jitter, factors, order, gray
        jitter = rand(batch) < self.jitter_p
        # Python scalars, not torch.tensor(..., device=...): a host-to-device copy synchronises.
        u = rand(batch, 4)  # (B, 4)
        factors = torch.stack([lo[i] + span[i] * u[:, i] for i in range(4)], dim=1)
        return AugmentationParams(
            crop=crop,
            flip=flip,
            jitter=jitter,
            factors=factors,  # (B, 4)
            order=rand(batch, 4).argsort(dim=1),  # (B, 4) a random permutation per image
            grayscale=rand(batch) < self.grayscale_p,
        )

    def apply(self, images: torch.Tensor, params: AugmentationParams) -> torch.Tensor:
        """Apply ``params`` to ``images`` (B, 3, H, W) float in [0, 1] -> (B, 3, size, size)."""
        return self._crop_flip(self._color(images, params), params)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"images must be a (B, 3, H, W) tensor, got {type(images).__name__}: stack a list "
                "with torch.stack(images)."
            )
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}.")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch (B = 0): pass at least one image.")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not images.is_floating_point():
            raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}.")
        check_generator(generator, images.device)
        batch, _, height, width = images.shape
        params = self.sample_params(batch, height, width, images.device, generator)
        return self.apply(images, params)

    def _color(self, x: torch.Tensor, params: AugmentationParams) -> torch.Tensor:
        """Colour jitter in each image's own random order, then random grayscale."""
        # (1, 1, 1, 0), made on the device (torch.tensor(..., device) would be a synced copy).
        identity = F.pad(torch.ones(3, device=x.device, dtype=x.dtype), (0, 1))
        factors = torch.where(params.jitter.unsqueeze(1), params.factors.to(x.dtype), identity)
        view = (-1, 1, 1, 1)
        for position in range(4):
            op = params.order[:, position]  # (B,) which operation comes at this position
            # Brightness, contrast and saturation are blends x * f + target * (1 - f) with
            # targets black, the mean luma and the luma image: one blend serves all three.
            gray = _to_gray(x)  # (B, 1, H, W)
            target = torch.where(
                (op == 0).view(view),
                torch.zeros_like(gray),
                torch.where((op == 1).view(view), gray.mean(dim=(1, 2, 3), keepdim=True), gray),
            )
            f = factors.gather(1, op.clamp(max=2).unsqueeze(1)).view(view)  # (B, 1, 1, 1)
            blended = (f * x + (1 - f) * target).clamp(0.0, 1.0)
            is_hue = (op == 3).view(view)
            hue_shift = torch.where(is_hue.view(-1), factors[:, 3], torch.zeros_like(factors[:, 3]))
            x = torch.where(is_hue, self._shift_hue(x, hue_shift), blended)
        gray = _to_gray(x).expand_as(x)
        return torch.where(params.grayscale.view(view), gray, x)

    @staticmethod
    def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        hsv = _rgb_to_hsv(x)
        h = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
        return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))

    def _crop_flip(self, x: torch.Tensor, params: AugmentationParams) -> torch.Tensor:
        """Crop each image's box, resize it bilinearly to ``size`` and flip: one grid_sample."""
        batch, channels, height, width = x.shape
        out_h, out_w = (height, width) if self.size is None else (self.size, self.size)
        top, left, h, w = params.crop.to(x.dtype).unbind(1)
        # Affine map from output to input coordinates, normalised to [-1, 1]
        # (align_corners=False: -1 and 1 are the outer edges of the border pixels).
        sx = w / width * torch.where(params.flip, -1.0, 1.0).to(x.dtype)
        sy = h / height
        cx = (2 * left + w) / width - 1
        cy = (2 * top + h) / height - 1
        zeros = torch.zeros_like(sx)
        theta = torch.stack((sx, zeros, cx, zeros, sy, cy), dim=1).view(batch, 2, 3)
        grid = F.affine_grid(theta, [batch, channels, out_h, out_w], align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.clamp(0.0, 1.0)


def original_view(images: torch.Tensor, size: int) -> torch.Tensor:
    """The un-augmented images as float in [0, 1] at the views' size (RoCL's attack on x, AIR's
    z_orig): resized (bilinear, antialiased) only when they are not ``size`` x ``size``.

    Args:
        images: (B, 3, H, W) uint8 in [0, 255] or float in [0, 1].
        size: the side of the augmented views.

    Returns:
        (B, 3, size, size) float in [0, 1], on the images' device.
    """
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        ).clamp_(0, 1)
    return x


def random_crop_flip(
    images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The standard adversarial-training augmentation, batched on the images' device.

    Equivalent to torchvision's ``RandomCrop(size, padding=padding)`` (zero padding) followed by
    ``RandomHorizontalFlip()``, with each image's own offsets and flip drawn in one batched call.

    Args:
        images: (B, 3, H, W) uint8 in [0, 255] or float in [0, 1].
        padding: zero padding on every side before the H x W crop (4 for CIFAR).
        generator: optional generator on the images' device, for reproducible draws.

    Returns:
        (B, 3, H, W) float in [0, 1], on the images' device.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}.")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    batch, channels, height, width = x.shape
    device = x.device
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    flip = torch.rand(batch, generator=generator, device=device) < 0.5  # (B,)
    rows = top[:, None] + torch.arange(height, device=device)  # (B, H)
    cols = left[:, None] + torch.arange(width, device=device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # reversed columns = crop, then flip
    b = torch.arange(batch, device=device).view(batch, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    c = torch.arange(channels, device=device).view(1, channels, 1, 1)  # (C,) -> (1, C, 1, 1)
    # (B, H) -> (B, 1, H, 1) and (B, W) -> (B, 1, 1, W): broadcast gather to (B, C, H, W)
    return padded[b, c, rows.view(batch, 1, height, 1), cols.view(batch, 1, 1, width)]
