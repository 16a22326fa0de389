"""
A measurement, not a feature: ``sb3-reinforce-zoo train`` with the critic fitted harder, to see whether a better
value baseline steadies REINFORCE on HalfCheetah (issue 18 asks how well the critic is fitted per batch; Spinning
Up's VPG fits its value function with 80 gradient steps per batch while the policy takes one).

After each update of :class:`~sb3_reinforce.REINFORCE` (one step on the policy and value loss together), this driver
takes ``CRITIC_STEPS`` more full-batch gradient steps on the value loss alone (the same targets, optimizer and
gradient clipping), and logs the critic's explained variance on the batch after them (``train/critic_ev_after``;
``train/explained_variance`` is the one before the update). Every argument goes to the zoo's command line::

    CRITIC_STEPS=80 python benchmarks/searches/critic_fit_probe.py train --algo reinforce --env HalfCheetah-v4 \
        --seed 10 -n 1000000 --eval-freq 40000 --eval-episodes 10 --n-eval-envs 1 --num-threads 1 --device cpu -f LOGDIR

It wraps private methods of the algorithm, so it is tied to this version of ``sb3_reinforce``. Result:
``README.md`` of this folder, HalfCheetah section.
"""

import os
import sys
from typing import Any

import torch as th
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

import sb3_reinforce.reinforce.reinforce as algorithm_module
from sb3_reinforce.zoo import main

CRITIC_STEPS = int(os.environ.get("CRITIC_STEPS", "0"))
REINFORCE = algorithm_module.REINFORCE
original_evaluate_actions = algorithm_module.evaluate_actions
original_batch_and_scale = REINFORCE._batch_and_scale
original_gradient_step = REINFORCE._gradient_step


def evaluate_actions(policy: Any, observations: Any, actions: th.Tensor, with_critic: bool) -> Any:
    policy.probe_observations = observations  # the batch's observations, for the critic steps
    return original_evaluate_actions(policy, observations, actions, with_critic=with_critic)


def batch_and_scale(self: Any) -> Any:
    self.probe_batch = original_batch_and_scale(self)  # the batch and the (mean, std) its targets are scaled with
    return self.probe_batch


def gradient_step(self: Any, loss: th.Tensor) -> float:
    grad_norm = original_gradient_step(self, loss)  # the update as REINFORCE takes it
    if CRITIC_STEPS and self.baseline == "value":
        batch, _, _, (mean, std) = self.probe_batch
        observations = self.policy.probe_observations
        target = th.as_tensor((batch.returns - mean) / std, dtype=th.float32, device=self.device).flatten()
        for _ in range(CRITIC_STEPS):
            original_gradient_step(self, self.vf_coef * F.mse_loss(self.policy.predict_values(observations).flatten(), target))
        with th.no_grad():
            values = self.policy.predict_values(observations).flatten()
        self.logger.record("train/critic_ev_after", explained_variance(values.cpu().numpy(), target.cpu().numpy()))
    return grad_norm


algorithm_module.evaluate_actions = evaluate_actions
REINFORCE._batch_and_scale = batch_and_scale  # type: ignore[method-assign]
REINFORCE._gradient_step = gradient_step  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
