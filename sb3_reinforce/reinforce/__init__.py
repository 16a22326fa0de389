from sb3_reinforce.reinforce.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_reinforce.reinforce.reinforce import REINFORCE, NonFiniteError

__all__ = ["REINFORCE", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "NonFiniteError"]
