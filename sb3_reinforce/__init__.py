"""REINFORCE (Monte Carlo policy gradient) for Stable-Baselines3."""

import importlib.metadata

from sb3_reinforce.reinforce import REINFORCE, NonFiniteError
from sb3_reinforce.reinforce.save_file import CodeInFileError, load_vec_normalize

__version__ = importlib.metadata.version("sb3-reinforce")  # pyproject.toml's, the one place it is written

__all__ = ["REINFORCE", "CodeInFileError", "NonFiniteError", "__version__", "load_vec_normalize"]
