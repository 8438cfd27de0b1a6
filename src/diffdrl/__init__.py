"""diffdrl: unsupervised disentangled representation learning with diffusion models."""

from diffdrl.api import load_model
from diffdrl.training.config import Config, load_config
from diffdrl.training.trainer import train
from diffdrl.version import __version__

__all__ = ["Config", "load_config", "load_model", "train", "__version__"]
