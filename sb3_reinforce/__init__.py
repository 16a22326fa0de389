"""REINFORCE (Monte Carlo policy gradient) for Stable-Baselines3."""

from sb3_reinforce.reinforce import REINFORCE, NonFiniteError

__version__ = "0.1.0"

__all__ = ["REINFORCE", "NonFiniteError", "__version__"]
