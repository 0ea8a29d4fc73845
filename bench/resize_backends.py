"""How far the two resize backends (``INPUT.RESIZE_BACKEND``) are apart: a model converted from one family's official
code sees other pixels if the project resized with the other family's filter.

"cv2" is mmcv's OpenCV bilinear resize (the MMSegmentation families), "pil" detectron2's Pillow bilinear filter
(universal Mask2Former, FreeSeg). On a downscale Pillow averages the whole footprint of an output pixel and OpenCV
samples 2x2 pixels; on an upscale only the rounding differs. Prints, per image and scale, the mean and largest
absolute difference in grey levels and the share of values that differ.

    python bench/resize_backends.py
"""

import argparse
from typing import Dict, List, Optional

import numpy as np
from PIL import Image
from tabulate import tabulate

from freemask.data.mappers import transforms as T

SCALES = (0.4, 0.5, 2 / 3, 1.25, 2.0)


def test_images() -> Dict[str, np.ndarray]:
    """A photograph (matplotlib's sample portrait, when matplotlib is installed) and a textured synthetic image."""
    images = {}
    try:
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:
            images["photo 600x512 (grace_hopper.jpg)"] = np.asarray(photo.convert("RGB"))
    except (ImportError, OSError):
        pass
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640].astype(np.float64)
    texture = 128 + 60 * np.sin(x / 3.1 + y / 7.3) + 40 * np.sin(np.hypot(x - 250, y - 200) / 2.3)
    noisy = texture[..., None] + rng.normal(0, 12, (480, 640, 3))
    images["texture 480x640"] = np.clip(noisy, 0, 255).astype(np.uint8)
    return images


def main(argv: Optional[List[str]] = None) -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    rows = []
    for name, image in test_images().items():
        height, width = image.shape[:2]
        for scale in SCALES:
            size = (int(height * scale + 0.5), int(width * scale + 0.5))
            pil = T.resize_image(image, size, "pil").astype(np.int16)
            cv2 = T.resize_image(image, size, "cv2").astype(np.int16)
            diff = np.abs(pil - cv2)
            rows.append([name, f"x{scale:.3g}", f"{size[0]}x{size[1]}", diff.mean(), diff.max(), (diff > 0).mean()])
    headers = ["image", "scale", "size", "mean abs(pil - cv2)", "max", "share differing"]
    print(tabulate(rows, headers=headers, floatfmt=".3f", tablefmt="github"))


if __name__ == "__main__":
    main()
