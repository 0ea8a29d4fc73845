"""The toy dataset and the toy run of the whole FreeMask pipeline: checks of the machinery, not a method.

The toy data are procedural street-like scenes (six classes, each with its own colour and texture) in the ADE20K
on-disk layout, with "synthetic" copies whose planted defects are known pixel by pixel (``generator``, with its
panoptic/instance and open-vocabulary files in ``generator_panoptic`` and ``generator_open_vocab``). A small CNN
learns them in minutes on a CPU, so the engine, the filter and the resampler can be run end to end by the tests and
by ``tools/run_freemask_pipeline.py`` (``pipeline``, its table in ``pipeline_report``), and the filter's output can be
scored against the planted defects (``defect_score``). Nothing here is part of the method in ``freemask.synthetic``;
the toy datasets' registration stays with the other datasets in ``freemask.data.datasets``.
"""
