# REINFORCE uses SB3's actor-critic policies unchanged. With ``baseline="none"`` or ``"mean"`` only the actor
# (features extractor, ``mlp_extractor.policy_net``, ``action_net``) is evaluated and trained; the value head is
# built by SB3 but never enters the estimator.
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy
