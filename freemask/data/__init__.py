"""Datasets and their data, by role; importing this registers the builtin datasets (lazily, no disk access).

- :mod:`.catalog` (``DatasetCatalog``, ``MetadataCatalog``, ``datasets_root()``) and :mod:`.datasets` (one file per
  dataset family, registered on import): which datasets exist and where their files are.
- :mod:`.prepare`: raw annotations -> the folders the loaders read, once, by ``datasets/prepare_*.py``.
- :mod:`.mappers`: one record -> one model input (reading, augmenting, the per-task targets).
- :mod:`.loading`: the training and test loaders (``loading/build.py``), their samplers, and the record storage that
  lets every worker read the records without a copy. A sub-package rather than the top level because its eight
  files are one job and would otherwise hide the other roles.
- :mod:`.check`: every file of a registered dataset checked as training reads it (``tools/check_dataset.py``).
- Read by every role: :mod:`.errors`, :mod:`.panoptic_png` (the COCO panoptic PNG format) and
  :mod:`.object_records` (the objects of panoptic and instance records).

Importing the package loads no torch: the preparation scripts and the light tools register and read datasets without
torch's seconds of import. Callers that build loaders import them from :mod:`freemask.data.loading.build`.
"""

from . import datasets  # noqa: F401  (registers the builtin datasets)
from .catalog import DatasetCatalog, MetadataCatalog

__all__ = ["DatasetCatalog", "MetadataCatalog"]
