"""Random training batches of rays drawn from a capture (rays: `loopnerf.data.rays`)."""

from __future__ import annotations

import numpy as np
import torch

from loopnerf.data.rays import rays_for_pixels


class RayBatcher:
    """Draws random rays (frame, pixel) from a capture's training frames.

    Holds the training images as uint8/float tensors; rays are computed per batch, so
    memory stays at the images' size whatever the capture length.
    """

    def __init__(self, capture, frame_ids: np.ndarray) -> None:
        self.frame_ids = torch.as_tensor(np.asarray(frame_ids), dtype=torch.long)
        imgs = capture.images[np.asarray(frame_ids)]
        self.images = torch.from_numpy(np.ascontiguousarray(imgs))
        self.is_uint8 = self.images.dtype == torch.uint8
        self.c2w = torch.tensor(capture.c2w[np.asarray(frame_ids)], dtype=torch.float32)
        intr = capture.intrinsics_array()[np.asarray(frame_ids)]
        self.intr = torch.tensor(intr[:, :4], dtype=torch.float32)
        self.times = torch.tensor(capture.times[np.asarray(frame_ids)], dtype=torch.float32)
        self.h, self.w = capture.height, capture.width
        self.focus_pixels: torch.Tensor | None = None
        self.focus_fraction = 0.0

    def focus(self, pixels: torch.Tensor, fraction: float) -> None:
        """Draw `fraction` of every batch among `pixels` (int flat indices frame * H * W +
        row * W + column into this batcher's frames, e.g. `ray_focus.focus_indices`), the
        rest among all pixels. An empty `pixels` or fraction 0 draws uniformly."""
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"focus fraction must be in [0, 1), got {fraction}")
        self.focus_pixels = pixels if len(pixels) else None
        self.focus_fraction = float(fraction)

    def sample(self, n: int, generator: torch.Generator) -> dict:
        """`n` random rays: origins, dirs [n, 3], times [n], rgb [n, 3] float in [0, 1], and
        `frame` [n]: each ray's index into this batcher's frames."""
        f = torch.randint(0, len(self.frame_ids), (n,), generator=generator)
        u = torch.randint(0, self.w, (n,), generator=generator)
        v = torch.randint(0, self.h, (n,), generator=generator)
        k = int(round(n * self.focus_fraction)) if self.focus_pixels is not None else 0
        if k:
            pick = self.focus_pixels[torch.randint(0, len(self.focus_pixels), (k,), generator=generator)].long()
            f[:k], v[:k], u[:k] = pick // (self.h * self.w), (pick // self.w) % self.h, pick % self.w
        o, d = rays_for_pixels(self.c2w[f], self.intr[f], u.float(), v.float())
        rgb = self.images[f, v, u]
        rgb = rgb.float() / 255.0 if self.is_uint8 else rgb.float()
        return {"origins": o, "dirs": d, "times": self.times[f], "rgb": rgb, "frame": f}
