"""Test-time inference modes shared by every model: whole image, sliding window, multi-scale + flip.

A model only knows how to turn a normalised batch ``(N, 3, h, w)`` into logits ``(N, C, h, w)`` and logits into
class scores; how the test image is cut, padded, rescaled and flipped is the same for every architecture, so it
lives here once. Scores are always returned at the ORIGINAL image resolution ``(C, H0, W0)``: the benchmark numbers of
ADE20K/Cityscapes/COCO-Stuff are computed against the untouched ground truth, never against a resized one.

Where the activation (softmax) sits follows MMSegmentation's ``EncoderDecoder``, the protocol behind the published
numbers: ``slide_inference`` averages the windows' LOGITS, ``inference`` resizes the logits to the original size and
only then takes the softmax, and ``aug_test`` averages those softmax probabilities over scales and flips. The
sliding-window grid is ``slide_inference``'s: ``ceil((H - crop) / stride) + 1`` windows per axis, the last one moved
back to end flush with the border, every window cut at the image border (an image smaller than the crop is one window
of its own size, never padded to the crop).
"""

from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..config import CfgNode, ConfigError

PredictFn = Callable[[torch.Tensor], torch.Tensor]


def _identity(scores: torch.Tensor) -> torch.Tensor:
    return scores


def sliding_windows(
    height: int, width: int, crop_size: Tuple[int, int], stride: Tuple[int, int]
) -> List[Tuple[int, int, int, int]]:
    """Windows ``(y1, x1, y2, x2)`` covering a ``height x width`` image, in MMSegmentation's order.

    Per axis there are ``max(size - crop + stride - 1, 0) // stride + 1`` windows; a window that would cross the
    border is shifted back so it ends flush with it, and cut at the border when the image is smaller than the crop
    (one window of the image's own size on that axis), as MMSegmentation's ``slide_inference``. So every window has
    the same size, ``min(crop, size)`` per axis.
    """
    crop_h, crop_w = crop_size
    stride_h, stride_w = stride
    h_grids = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    w_grids = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    boxes = []
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y2 = min(h_idx * stride_h + crop_h, height)
            x2 = min(w_idx * stride_w + crop_w, width)
            boxes.append((max(y2 - crop_h, 0), max(x2 - crop_w, 0), y2, x2))
    return boxes


def _resize(scores: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(C, h, w)`` or ``(N, C, h, w)`` scores to ``size`` (no-op when already that size)."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    batched = scores if scores.dim() == 4 else scores[None]
    out = F.interpolate(batched, size=tuple(size), mode="bilinear", align_corners=False)
    return out if scores.dim() == 4 else out[0]


def _pair(value: Sequence[int], key: str) -> Tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) <= 0:
        raise ConfigError(f"{key} must be two positive integers [height, width], got {list(value)}")
    return pair  # type: ignore[return-value]


class SegmentationInference:
    """Turns ``predict`` (logits at the input's resolution) into scores of one test image at its original size.

    Args:
        mode: "whole" (one forward on the padded image) or "slide" (crop windows, logits averaged where they
            overlap).
        crop_size: (height, width) of a sliding window.
        stride: (height, width) step between windows; at most ``crop_size`` so every pixel is covered.
        ratios: test scales relative to the image given to ``__call__``; several = multi-scale inference.
        flip: also predict on the horizontally flipped image (at every ratio) and average.
        size_divisibility: each input to ``predict`` (the whole image or one window) is padded (bottom/right, with
            0 = the pixel mean after normalisation) to a multiple of this and its logits cropped back (0 or 1 = none;
            the official value per model family is in its config, TEST.SIZE_DIVISIBILITY).
        window_batch_size: sliding windows given to ``predict`` in one call (bounds the memory of large images).
    """

    def __init__(
        self,
        mode: str = "whole",
        crop_size: Sequence[int] = (512, 512),
        stride: Sequence[int] = (341, 341),
        ratios: Sequence[float] = (1.0,),
        flip: bool = False,
        size_divisibility: int = 0,
        window_batch_size: int = 8,
    ) -> None:
        if mode not in ("whole", "slide"):
            raise ConfigError(f"inference mode must be 'whole' or 'slide', got {mode!r}")
        self.mode = mode
        self.crop_size = _pair(crop_size, "TEST.SLIDING_WINDOW.CROP_SIZE")
        self.stride = _pair(stride, "TEST.SLIDING_WINDOW.STRIDE")
        if mode == "slide" and (self.stride[0] > self.crop_size[0] or self.stride[1] > self.crop_size[1]):
            raise ConfigError(
                f"TEST.SLIDING_WINDOW.STRIDE {list(self.stride)} is larger than CROP_SIZE {list(self.crop_size)}; "
                "windows would leave pixels unpredicted — use a stride of at most the crop size"
            )
        self.ratios = tuple(float(r) for r in ratios)
        if not self.ratios or min(self.ratios) <= 0:
            raise ConfigError(f"TEST.AUG.RATIOS must be a non-empty list of positive scales, got {list(ratios)}")
        self.flip = bool(flip)
        self.size_divisibility = int(size_divisibility)
        if window_batch_size < 1:
            raise ValueError(f"window_batch_size must be at least 1, got {window_batch_size}")
        self.window_batch_size = int(window_batch_size)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> "SegmentationInference":
        """TEST.SLIDING_WINDOW: the mode; TEST.AUG (when ENABLED): ratios and flip; TEST.SIZE_DIVISIBILITY: the pad."""
        window, aug = cfg.TEST.SLIDING_WINDOW, cfg.TEST.AUG
        return cls(
            mode="slide" if window.ENABLED else "whole",
            crop_size=tuple(window.CROP_SIZE),
            stride=tuple(window.STRIDE),
            ratios=tuple(aug.RATIOS) if aug.ENABLED else (1.0,),
            flip=bool(aug.FLIP) if aug.ENABLED else False,
            size_divisibility=cfg.TEST.SIZE_DIVISIBILITY,
        )

    def __call__(
        self,
        predict: PredictFn,
        image: torch.Tensor,
        output_size: Tuple[int, int],
        activation: PredictFn = _identity,
    ) -> torch.Tensor:
        """Scores ``(C, H0, W0)`` of ``image`` ``(1, 3, h, w)`` (normalised), averaged over ratios and flips.

        ``predict`` gives logits ``(N, C, h, w)`` and ``activation`` turns logits ``(1, C, H0, W0)`` into scores
        (softmax for a per-pixel classifier; the identity, the default, for a ``predict`` that already returns
        scores, such as Mask2Former's). ``output_size`` is ``(H0, W0)``, the original resolution the ground truth
        has. Per (ratio, flip) the logits (windows averaged) are resized to it, then activated, and the scores are
        averaged over ratios and flips, as MMSegmentation's ``inference`` and ``aug_test``.
        """
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"inference takes one image of shape (1, 3, h, w), got {tuple(image.shape)}")
        return self.batch(predict, image, [output_size], activation)[0]

    def batch(
        self,
        predict: PredictFn,
        images: torch.Tensor,
        output_sizes: Sequence[Tuple[int, int]],
        activation: PredictFn = _identity,
    ) -> List[torch.Tensor]:
        """Scores ``(C, H0_i, W0_i)`` of each of ``images`` ``(N, 3, h, w)``, one size for all, sharing the forwards.

        Each image gets the scores ``__call__`` gives it alone: the same padding, the same windows, its own output
        size; only ``predict`` sees the N images (or their windows) together. So batched evaluation
        (``TEST.IMS_PER_BATCH``) changes the speed, not the numbers, unlike padding images of different sizes to one.
        """
        if images.dim() != 4 or images.shape[0] != len(output_sizes):
            raise ValueError(
                f"batch takes images (N, 3, h, w) and N output sizes, got {tuple(images.shape)} and "
                f"{len(output_sizes)} sizes"
            )
        height, width = images.shape[-2:]
        totals: List[torch.Tensor] = []
        count = 0
        for ratio in self.ratios:
            scaled = images
            if ratio != 1.0:
                size = (int(height * ratio + 0.5), int(width * ratio + 0.5))
                scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                logits = self._logits(predict, scaled.flip(-1) if flipped else scaled)
                if flipped:
                    logits = logits.flip(-1)
                for index, output_size in enumerate(output_sizes):
                    scores = activation(_resize(logits[index], output_size)[None])[0]
                    if count == 0:
                        totals.append(scores)
                    else:
                        totals[index] = totals[index] + scores
                count += 1
        return totals if count == 1 else [total / count for total in totals]

    def _logits(self, predict: PredictFn, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C, h, w)`` of ``images`` ``(N, 3, h, w)`` at their own resolution, in the configured mode."""
        if self.mode == "slide":
            return torch.stack([self._slide(predict, images[i : i + 1]) for i in range(images.shape[0])])
        return self._predict_padded(predict, images).float()

    def _predict_padded(self, predict: PredictFn, images: torch.Tensor) -> torch.Tensor:
        """``predict`` on ``images`` ``(N, 3, h, w)`` padded to ``size_divisibility``; logits ``(N, C, h, w)``.

        As Mask2Former (detectron2's ``ImageList`` padding, then ``sem_seg_postprocess`` cropping to the image) and
        MMSegmentation's ``size_divisor`` test padding: the forward sees the padded input, the padding's logits are
        dropped before anything is resized.
        """
        height, width = images.shape[-2:]
        padded_h, padded_w = height, width
        if self.size_divisibility > 1:
            d = self.size_divisibility
            padded_h, padded_w = -(-height // d) * d, -(-width // d) * d
        logits = predict(F.pad(images, (0, padded_w - width, 0, padded_h - height)))
        expected = (images.shape[0], padded_h, padded_w)
        if logits.dim() != 4 or (logits.shape[0], *logits.shape[-2:]) != expected:
            raise ValueError(
                f"predict must return logits (N, C, H, W) at its input's resolution {expected}, "
                f"got {tuple(logits.shape)}"
            )
        return logits[..., :height, :width]

    def _slide(self, predict: PredictFn, image: torch.Tensor) -> torch.Tensor:
        """Average of window logits over ``image`` ``(1, 3, h, w)``; returns ``(C, h, w)``.

        As MMSegmentation's ``slide_inference``: windows are cut at the image border (an image smaller than the crop
        is one window of its own size), each window's logits are added where it lies and divided by the number of
        windows covering the pixel. All windows have one size, so they are predicted in batches of
        ``window_batch_size``; each is padded to ``size_divisibility`` on its own (0 for the MMSegmentation families,
        whose test pipeline does not pad).
        """
        height, width = image.shape[-2:]
        boxes = sliding_windows(height, width, self.crop_size, self.stride)
        count = image.new_zeros((1, height, width), dtype=torch.float32)
        total = None
        for start in range(0, len(boxes), self.window_batch_size):
            chunk = boxes[start : start + self.window_batch_size]
            windows = torch.cat([image[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in chunk])
            logits = self._predict_padded(predict, windows).float()
            if total is None:
                total = logits.new_zeros((logits.shape[1], height, width))
            for (y1, x1, y2, x2), window_logits in zip(chunk, logits):
                total[:, y1:y2, x1:x2] += window_logits
                count[:, y1:y2, x1:x2] += 1
        return total / count
