"""FreeMask's hardness-aware re-sampling: harder real masks get more synthetic copies. ``run.SyntheticResampler`` is
one run; ``hardness`` scores a mask, ``plan`` chooses copies and seeds, ``outputs`` writes the choice."""
