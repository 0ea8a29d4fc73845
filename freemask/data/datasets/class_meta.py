"""The packaged class lists (``meta/*.json``): names, palettes and, for COCO-Stuff, the original category ids."""

import functools
import json
from importlib import resources
from typing import Any, Dict, Tuple


@functools.lru_cache(maxsize=None)
def read_meta_file(filename: str) -> Dict[str, Any]:
    """The parsed ``meta/<filename>``, read once per process."""
    return json.loads(resources.files(__package__).joinpath("meta", filename).read_text(encoding="utf-8"))


def class_meta(filename: str, num_classes: int) -> Tuple[Tuple[str, ...], Tuple[Tuple[int, int, int], ...]]:
    """(class names, RGB colours) in label order, checked to be ``num_classes`` distinct names and as many colours."""
    data = read_meta_file(filename)
    classes, colors = tuple(data["classes"]), tuple(tuple(c) for c in data["colors"])
    if len(classes) != num_classes or len(colors) != num_classes or len(set(classes)) != num_classes:
        raise ValueError(
            f"meta/{filename} must list {num_classes} distinct classes and {num_classes} colours; reinstall freemask"
        )
    return classes, colors
