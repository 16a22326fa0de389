"""REINFORCE (Monte Carlo policy gradient) for Stable-Baselines3."""

from sb3_reinforce.reinforce import REINFORCE, NonFiniteError
from sb3_reinforce.reinforce.save_file import CodeInFileError, load_vec_normalize

__version__ = "0.1.0"

__all__ = ["REINFORCE", "CodeInFileError", "NonFiniteError", "__version__", "load_vec_normalize"]
