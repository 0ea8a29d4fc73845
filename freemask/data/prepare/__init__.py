"""Dataset preparation: raw annotations converted once into the folders the loaders read.

Run by the ``datasets/prepare_*.py`` scripts through :func:`.cli.prepare_main`: :mod:`.sem_seg` holds the shared
conversion steps and the semantic datasets, :mod:`.panoptic` the panoptic and instance ones, :mod:`.open_vocab` the
seen/unseen splits written for every family (:mod:`.open_vocab_datasets`, :mod:`.coco_full`,
:mod:`.synthetic_open_vocab` apply them per dataset). Imports nothing, so that each script loads only its own steps.
"""
