"""VideoLoop3D's patch-based looping loss.

The looping loss (Ma et al., "3D Video Loops from Asynchronous Input", CVPR 2023; their
`utils_vid.py` gpnn loss, here with squared error) makes a short video of F frames
(the loop) look, patch by patch, like a long reference video, *including across the
wrap from its last frame back to its first*:

1. pad the loop circularly with its first `frames - 1` frames, so patches that straddle
   the seam exist;
2. cut both videos into 3D patches of `frames` x `patch` x `patch` pixels (time strides
   `frame_stride`, space strides `stride`);
3. for every spatial patch position, match each loop patch to its nearest reference
   patch *at the same position* (the search runs over time only) by mean squared
   difference; with `alpha` set, each distance is divided by (alpha + that reference
   patch's smallest distance to any loop patch): the completeness normalisation, which
   pushes loop patches towards reference patches nothing in the loop resembles yet;
4. fold the matched reference patches back into a video (averaging where they overlap):
   the target, computed without gradient;
5. loss = mean squared difference between the padded loop and the target.

The patch grid, the matching and the folding live in `loopnerf.patches` (the loop
metrics of `loopnerf.evaluation` use them too).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch

from loopnerf.patches import nearest_patch_target, pad_loop


def looping_loss(
    rendered: torch.Tensor,
    reference: torch.Tensor,
    *,
    patch: int = 3,
    frames: int = 3,
    stride: int = 2,
    frame_stride: int = 1,
    alpha: Optional[float] = None,
    block: Optional[int] = None,
    wrap: Literal["append", "both"] = "append",
) -> torch.Tensor:
    """VideoLoop3D's looping loss (squared error) of a loop against a reference video.

    Args:
        rendered: [F, H, W, C] the loop's frames (one period), differentiable.
        reference: [T, H, W, C] the video to imitate (T >= frames); never gets a gradient.
        patch: patch side in pixels (VideoLoop3D default 3; 11 on reference views).
        frames: patch length in frames (default 3).
        stride: spatial stride between patches in pixels (default 2; 4 on reference views).
        frame_stride: temporal stride between patches in frames (default 1).
        alpha: None = plain nearest neighbours; a float enables the completeness
            normalisation (VideoLoop3D uses 0 on reference views).
        block: spatial patch positions per block (memory bound; no effect on the value).
        wrap: 'append' (VideoLoop3D): the loop followed by its first frames - 1 frames, the
            loss over that padded video. 'both': the loop with its last frames - 1 frames
            before it and its first frames - 1 after it, the loss over the F loop frames
            only. With 'append' the first frames - 1 loop frames sit at the padded video's
            ends, where fewer patches overlap, so their targets are averaged less and they
            are pulled harder than the rest; the seam then shows as the loop's largest
            step. With 'both' every loop frame, across the seam too, lies under the same
            number of patches.

    Returns:
        scalar tensor: mean squared difference to the folded nearest-neighbour target
        (over the padded loop for 'append', the F loop frames for 'both'). Exactly 0 when
        every loop patch, seam included, occurs in the reference at the same position.
    """
    if wrap == "append":
        padded = pad_loop(rendered, frames)
        lo, hi = 0, padded.shape[0]
    elif wrap == "both":
        f = rendered.shape[0]
        idx = torch.arange(-(frames - 1), f + frames - 1, device=rendered.device) % f
        padded = rendered[idx]
        lo, hi = frames - 1, frames - 1 + f
    else:
        raise ValueError(f"wrap must be 'append' or 'both', got {wrap!r}")
    target = nearest_patch_target(
        padded, reference, patch=patch, frames=frames, stride=stride,
        frame_stride=frame_stride, alpha=alpha, block=block,
    )
    return ((padded[lo:hi] - target[lo:hi]) ** 2).mean()
