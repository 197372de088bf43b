"""Temporal stabilization at inference time, for any model: reuse the past where the input stood still.

A network that sees each frame alone answers small input changes (sensor noise, compression) with
large output changes, and the video shimmers. Without optical flow, one thing is known for sure:
where the input did not change, the output should not either. ``TemporalStabilizer`` keeps a
reference input and the previous output; a per-pixel mask says where the picture stood still (1
where the mean difference between the new frame and the reference over ``BLOCK`` x ``BLOCK`` pixels
is 0, falling linearly to 0 at ``threshold``), and there the past is kept with weight ``strength``:

- ``blend`` mixes the new stylized frame with the previous output;
- ``denoise`` mixes the new input frame with the reference input before the network, so noise
  never reaches it (the output is recomputed every frame, so it stays the model's own picture);
- ``both`` does both.

Where the picture moves or the scene cuts, the mask is 0 and the frame is stylized alone. The work
is a few passes of NumPy over the frame (no torch: its thread pool would compete with the network's).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK", "DEFAULT_STRENGTH", "DEFAULT_THRESHOLD", "STABILIZE_METHODS", "TemporalStabilizer"]

STABILIZE_METHODS = ("none", "blend", "denoise", "both")
DEFAULT_STRENGTH = 0.8
# A change of a block's mean colour of 12/255 or more counts as motion; sensor noise averages far below.
DEFAULT_THRESHOLD = 12 / 255
BLOCK = 4  # the mask is computed on BLOCK x BLOCK means, then interpolated back to every pixel


def _upsample(small: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear interpolation of block values back to ``size`` pixels along ``axis`` (block centres kept)."""
    position = (np.arange(size, dtype=np.float32) + 0.5) / BLOCK - 0.5
    position = position.clip(0, small.shape[axis] - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, small.shape[axis] - 1)
    shape = [1, 1]
    shape[axis] = size
    frac = (position - low).reshape(shape)
    return np.take(small, low, axis) * (1 - frac) + np.take(small, high, axis) * frac


def _mix_in(current: np.ndarray, past: np.ndarray, weight: np.ndarray) -> None:
    """``current += weight * (past - current)``, in place and with one temporary."""
    step = np.subtract(past, current)
    np.multiply(step, weight, out=step)
    np.add(current, step, out=current)


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
        self._reference: np.ndarray | None = None  # (H, W, 3) float32, 0-255
        self._output: np.ndarray | None = None
        self._weight: np.ndarray | None = None  # (H, W, 1): the past's share in the current frame

    def still_mask(self, frame: np.ndarray) -> np.ndarray:
        """``(H, W)`` in [0, 1]: 1 where ``frame`` (``(H, W, 3)`` float, 0-255) matches the reference."""
        assert self._reference is not None
        h, w = frame.shape[:2]
        diff = frame - self._reference
        if h % BLOCK or w % BLOCK:
            diff = np.pad(diff, ((0, -h % BLOCK), (0, -w % BLOCK), (0, 0)), mode="edge")
        # Averaged before the absolute value, so zero-mean noise cancels and a moving edge does not.
        # (Rows first, then columns: two contiguous reductions, far faster than one over axes 1 and 3.)
        rows, cols = diff.shape[0] // BLOCK, diff.shape[1] // BLOCK
        blocks = diff.reshape(rows, BLOCK, cols * BLOCK, 3).sum(1).reshape(rows, cols, BLOCK, 3).sum(2)
        change = np.abs(blocks).mean(-1) / BLOCK**2
        still = (1 - change / (255 * self.threshold)).clip(0, 1)
        return _upsample(_upsample(still, w, 1), h, 0)

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """Take the next input frame (``(H, W, 3)`` uint8); return what the network should see."""
        frame = pixels.astype(np.float32)
        if self._reference is None or self._reference.shape != frame.shape:
            self.reset()
            self._reference = frame
            return pixels
        self._weight = (self.still_mask(frame) * self.strength)[..., None]
        _mix_in(frame, self._reference, self._weight)
        self._reference = frame
        if self.method in ("denoise", "both"):
            return np.rint(frame).astype(np.uint8)
        return pixels

    def finish(self, stylized: np.ndarray) -> np.ndarray:
        """Take the network's picture of the frame last prepared; return the frame to write."""
        out = stylized.astype(np.float32)
        previous = self._output
        self._output = out
        if (
            self.method == "denoise"
            or self._weight is None
            or previous is None
            or previous.shape != out.shape
        ):
            return stylized
        _mix_in(out, previous, self._weight)
        return np.rint(out).astype(np.uint8)
