"""Configuration, the training loop, checkpoints and EMA."""
