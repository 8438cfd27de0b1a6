"""Which weights of a run's checkpoint to load: the EMA copy (what the papers evaluate) or the raw
training weights. Torch-free, so the command line's parser can offer the choice without torch."""

WEIGHTS = ("ema", "model")  # the first is the default everywhere
