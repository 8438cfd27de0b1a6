"""diffdrl: unsupervised disentangled representation learning with diffusion models."""

__version__ = "0.1.0"

from diffdrl.api import load_model  # noqa: E402
from diffdrl.training.config import Config, load_config  # noqa: E402
from diffdrl.training.trainer import train  # noqa: E402

__all__ = ["Config", "load_config", "load_model", "train", "__version__"]
