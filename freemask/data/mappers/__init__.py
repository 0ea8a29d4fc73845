"""Dataset mappers: one record -> one model input, read from disk, augmented (training) or resized (test).

:mod:`.build` maps ``INPUT.DATASET_MAPPER_NAME`` to a mapper; :mod:`.semantic` (also the image and mask readers
every role uses), :mod:`.instance`, :mod:`.all_task` and :mod:`.binary` are the mappers; :mod:`.transforms` their
augmentations. Imports nothing, so that the torch-free tools can read masks through :mod:`.semantic`.
"""
