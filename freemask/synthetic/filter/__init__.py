"""The FreeMask filter: a synthetic pixel is set to "ignore" when a real-trained model finds it much harder than real
pixels of its class. ``run.SyntheticFilter`` is one run; ``rule`` the rule, ``batches`` the reading, ``loss`` the
per-pixel loss, ``outputs`` the files, ``options`` what the user chooses."""
