"""FreeMask preprocessing of synthetic pairs: loss-based filtering of noisy regions and hardness-aware resampling."""
