"""What every semantic-segmentation meta-architecture shares: normalisation, batching, inference modes."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...config import CfgNode, ConfigError
from ..inference import SegmentationInference


class SemanticSegmentor(nn.Module):
    """Base class: ``forward(list of mapper dicts)`` returns losses in training and per-image scores in evaluation.

    Subclasses implement, on normalised, padded images ``(N, 3, H, W)``, ``losses`` -> dict of scalar losses and
    either ``predict`` -> class scores ``(N, K, H, W)`` or, for a per-pixel classifier, ``predict_logits`` -> logits
    and ``scores_from_logits`` (softmax). The inference helper averages what ``predict_logits`` returns over
    overlapping sliding windows, resizes it to the original resolution, and only then applies ``scores_from_logits``
    and averages scales and flips, as MMSegmentation does; so every model gets whole-image, sliding-window and
    multi-scale + flip inference written once.
    """

    def __init__(
        self,
        *,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int,
        ignore_label: int,
        inference: SegmentationInference,
        input_format: str = "RGB",
    ) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.size_divisibility = size_divisibility
        self.ignore_label = ignore_label
        self.inference = inference
        if input_format not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be RGB or BGR, got {input_format!r}")
        self.input_format = input_format

    @staticmethod
    def base_config(cfg: CfgNode) -> dict:
        """Constructor arguments of this base class, for subclasses' ``from_config``."""
        return {
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "ignore_label": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "inference": SegmentationInference.from_config(cfg),
            "input_format": cfg.INPUT.FORMAT,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[dict], inference: Optional[SegmentationInference] = None) -> object:
        """Losses in training; in evaluation ``[{"sem_seg": (K, H, W) scores at the original size}]``.

        ``inference`` overrides the model's own test-time mode for this call (``Trainer.test`` passes the
        multi-scale + flip one for TEST.AUG.EVAL_BOTH's second pass) instead of being swapped on the model. Images of
        one size share their forwards (``SegmentationInference.batch``); each image's scores are those it gets alone.
        """
        images = [self._normalize(x["image"]) for x in batched_inputs]
        if self.training:
            # Mappers ship compact label dtypes (uint8); widened on the device, after the (8x smaller) copy.
            targets = [x["sem_seg"].to(self.device, non_blocking=True).long() for x in batched_inputs]
            return self.losses(*self._batch(images, targets))
        inference = self.inference if inference is None else inference
        by_shape: Dict[Tuple[int, ...], List[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(tuple(image.shape), []).append(index)
        outputs: List[dict] = [{} for _ in images]
        for indices in by_shape.values():
            sizes = [(batched_inputs[i]["height"], batched_inputs[i]["width"]) for i in indices]
            group = torch.stack([images[i] for i in indices])
            scores = inference.batch(self.predict_logits, group, sizes, activation=self.scores_from_logits)
            for index, image_scores in zip(indices, scores):
                outputs[index]["sem_seg"] = image_scores
        return outputs

    def preprocess(self, images: List[torch.Tensor], size_divisibility: Optional[int] = None) -> torch.Tensor:
        """The batch ``(N, 3, H, W)`` this model's forward sees for uint8 RGB images ``(3, h, w)`` as decoded.

        For callers outside the data pipeline (the FreeMask filter): channels in the model's input format (flipped to
        BGR if it was trained on BGR, which the dataset mapper does for training and evaluation), normalised on the
        model's device and padded bottom/right with 0 (= the mean) to the largest size, rounded up to a multiple of
        ``size_divisibility`` (default: the test-time one, ``TEST.SIZE_DIVISIBILITY``, not the training crop's).
        """
        divisor = self.inference.size_divisibility if size_divisibility is None else size_divisibility
        flip = self.input_format == "BGR"
        return self._pad_images([self._normalize(x, flip_channels=flip) for x in images], divisor)

    def _normalize(self, image: torch.Tensor, flip_channels: bool = False) -> torch.Tensor:
        """``(3, H, W)`` on the device, normalised; ``flip_channels`` reverses RGB <-> BGR first."""
        image = image.to(self.device, non_blocking=True)
        if flip_channels:
            image = image.flip(0)
        return (image.float() - self.pixel_mean) / self.pixel_std

    def _pad_images(self, images: List[torch.Tensor], size_divisibility: Optional[int] = None) -> torch.Tensor:
        """(N, 3, H, W): images padded bottom/right with 0 (= the mean) to a common size divisible by
        ``size_divisibility`` (default: the training one, ``INPUT.SIZE_DIVISIBILITY``)."""
        height = max(x.shape[-2] for x in images)
        width = max(x.shape[-1] for x in images)
        d = self.size_divisibility if size_divisibility is None else size_divisibility
        if d > 1:
            height, width = -(-height // d) * d, -(-width // d) * d
        return torch.stack([F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2])) for x in images])

    def _batch(self, images: List[torch.Tensor], targets: List[torch.Tensor]) -> tuple:
        """Pad to a common size divisible by ``size_divisibility`` (image with 0 = the mean, target with ignore)."""
        image_batch = self._pad_images(images)
        height, width = image_batch.shape[-2:]
        target_batch = torch.stack(
            [F.pad(t, (0, width - t.shape[-1], 0, height - t.shape[-2]), value=self.ignore_label) for t in targets]
        )
        return image_batch, target_batch

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores ``(N, K, H, W)`` at the resolution of ``images`` ``(N, 3, H, W)``."""
        raise NotImplementedError

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """What test-time inference averages over windows and resizes, ``(N, K, H, W)`` at the input's resolution.

        The default is ``predict``'s scores with ``scores_from_logits`` the identity: the right thing for a model
        with no per-pixel logits, such as Mask2Former, whose official inference combines classes and masks at the
        input resolution and resizes the combined scores.
        """
        return self.predict(images)

    def scores_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, K, H, W)`` of ``predict_logits``' output once resized to the original image (identity here)."""
        return logits

    def predict_log_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel log-probabilities ``(N, K, H, W)`` at the resolution of ``images`` ``(N, 3, H, W)``.

        The FreeMask filter scores a pixel by its cross-entropy ``-log p(label)``, so it needs a distribution over
        the classes, which ``predict`` does not promise: its scores only have to rank classes and average across
        windows. The default normalises the (non-negative) scores over classes and takes the log, clamped at the
        smallest normal float so a class scored exactly 0 costs about 87 nats instead of infinity (Mask2Former).
        A model with logits overrides this with their ``log_softmax`` (``EncoderDecoder``).
        """
        scores = self.predict(images).float()
        tiny = torch.finfo(scores.dtype).tiny
        probs = scores / scores.sum(dim=1, keepdim=True).clamp_min(tiny)
        return probs.clamp_min(tiny).log()

    def losses(self, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Scalar training losses for ``images`` ``(N, 3, H, W)`` and ``targets`` ``(N, H, W)``."""
        raise NotImplementedError
