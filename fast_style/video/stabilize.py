"""Temporal stabilization at inference time, for any model: reuse the past where the input stood still.

A network that sees each frame alone answers small input changes (sensor noise, compression) with
large output changes, and the video shimmers. Without optical flow, one thing is known for sure:
where the input did not change, the output should not either. ``TemporalStabilizer`` keeps a
reference input and the previous output; a per-pixel mask (1 where the blurred difference between
the new frame and the reference is 0, falling linearly to 0 at ``threshold``) says where the picture
stood still, and there the past is kept with weight ``strength``:

- ``blend`` mixes the new stylized frame with the previous output;
- ``denoise`` mixes the new input frame with the reference input before the network, so noise
  never reaches it (the output is recomputed every frame, so moving textures do not trail);
- ``both`` does both.

Where the picture moves or the scene cuts, the mask is 0 and the frame is stylized alone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_STRENGTH", "DEFAULT_THRESHOLD", "STABILIZE_METHODS", "TemporalStabilizer"]

STABILIZE_METHODS = ("none", "blend", "denoise", "both")
DEFAULT_STRENGTH = 0.8
# A change of the 5 x 5 mean colour of 12/255 or more counts as motion; sensor noise averages far below.
DEFAULT_THRESHOLD = 12 / 255
_BLUR = 5


def _to_float(pixels: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1).div_(255)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return image.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


class TemporalStabilizer:
    """Call ``prepare(frame)`` before the network and ``finish(stylized)`` after it, frame by frame.

    ``strength`` in [0, 1) is the weight of the past where the input stood still: the output of a
    still scene becomes a running average over about ``1 / (1 - strength)`` frames (5 at 0.8).
    """

    def __init__(
        self, method: str = "blend", strength: float = DEFAULT_STRENGTH, threshold: float = DEFAULT_THRESHOLD
    ) -> None:
        if method not in STABILIZE_METHODS or method == "none":
            raise ValueError(f"method must be one of {', '.join(STABILIZE_METHODS[1:])}, got {method!r}")
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be within [0, 1), got {strength}")
        if not threshold > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.method, self.strength, self.threshold = method, strength, threshold
        self.reset()

    def reset(self) -> None:
        """Forget the past (a new clip, or a cut the caller knows of)."""
        self._reference: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self._weight: torch.Tensor | None = None

    def still_mask(self, frame: torch.Tensor) -> torch.Tensor:
        """``(1, H, W)`` in [0, 1]: 1 where ``frame`` (``(3, H, W)`` in [0, 1]) matches the reference."""
        assert self._reference is not None
        # Averaged before the absolute value, so zero-mean noise cancels and a moving edge does not.
        change = F.avg_pool2d((frame - self._reference)[None], _BLUR, stride=1, padding=_BLUR // 2)[0]
        change = change.abs_().mean(0, keepdim=True)
        return change.div_(-self.threshold).add_(1).clamp_(0, 1)

    @torch.inference_mode()
    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """Take the next input frame (``(H, W, 3)`` uint8); return what the network should see."""
        frame = _to_float(pixels)
        if self._reference is None or self._reference.shape != frame.shape:
            self.reset()
            self._reference, self._weight = frame, None
            return pixels
        self._weight = self.still_mask(frame).mul_(self.strength)
        self._reference = frame.add_(self._weight * (self._reference - frame))
        return _to_uint8(self._reference) if self.method in ("denoise", "both") else pixels

    @torch.inference_mode()
    def finish(self, stylized: np.ndarray) -> np.ndarray:
        """Take the network's picture of the frame last prepared; return the frame to write."""
        out = _to_float(stylized)
        blend = self.method in ("blend", "both")
        if (
            blend
            and self._weight is not None
            and self._output is not None
            and self._output.shape == out.shape
        ):
            out.add_(self._weight * (self._output - out))
            self._output = out
            return _to_uint8(out)
        self._output = out
        return stylized
