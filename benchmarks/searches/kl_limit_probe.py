"""
A measurement, not a feature: ``sb3-reinforce-zoo train`` with each update limited in how far it moves the policy,
to see whether a per-update limit lets REINFORCE take larger steps on Acrobot-v1 without the seeds that fall apart
(issue 18 names "a per-update limit on how far the policy may move, checked on the batch" as a means).

After each update of :class:`~sb3_reinforce.REINFORCE` (one Adam step on its loss) this driver measures, on the
batch just used, the KL divergence from the policy before the step to the policy after it, with the estimator
``mean(r - 1 - log r)``, ``r = pi_new(a|s) / pi_old(a|s)`` over the batch's own actions (non-negative, as PPO's
``approx_kl``). With ``KL_TARGET`` > 0, a step whose KL exceeds it is shrunk: the parameters are moved back to
``old + f * (new - old)`` with ``f`` = 1/2, 1/4, ... (at most 9 halvings; 0, the step undone, if none is within the
target; the optimizer's moments keep the step's gradient). ``train/approx_kl`` and ``train/step_fraction`` (``f``)
are logged. Without ``KL_TARGET`` it only measures. Every argument goes to the zoo's command line::

    KL_TARGET=0.0005 python benchmarks/searches/kl_limit_probe.py train --algo reinforce --env Acrobot-v1 --seed 0 \
        -n 100000 --eval-freq 4000 --eval-episodes 10 --n-eval-envs 1 --num-threads 1 --device cpu -f LOGDIR \
        --hyperparams learning_rate:0.01

It wraps private methods of the algorithm, so it is tied to this version of ``sb3_reinforce``. Result:
``README.md`` of this folder, Acrobot section.
"""

import os
import sys
from typing import Any

import torch as th

import sb3_reinforce.reinforce.reinforce as algorithm_module
from sb3_reinforce.zoo import main

KL_TARGET = float(os.environ.get("KL_TARGET", "0") or 0)
MAX_HALVINGS = 9
REINFORCE = algorithm_module.REINFORCE
original_evaluate_actions = algorithm_module.evaluate_actions
original_gradient_step = REINFORCE._gradient_step


def evaluate_actions(policy: Any, observations: Any, actions: th.Tensor, with_critic: bool) -> Any:
    log_prob, entropy, values = original_evaluate_actions(policy, observations, actions, with_critic=with_critic)
    policy.probe_batch = (observations, actions, log_prob.detach())  # the batch and the policy's log-probs before the step
    return log_prob, entropy, values


def approx_kl(old_log_prob: th.Tensor, new_log_prob: th.Tensor) -> float:
    """``mean(r - 1 - log r)`` with ``r = exp(new - old)``: an estimate of KL(old || new) from old's own samples."""
    log_ratio = new_log_prob - old_log_prob
    return float(th.mean(th.exp(log_ratio) - 1.0 - log_ratio))


def gradient_step(self: Any, loss: th.Tensor) -> float:
    parameters = list(self.policy.parameters())
    before = [parameter.detach().clone() for parameter in parameters]
    grad_norm = original_gradient_step(self, loss)  # the update as REINFORCE takes it
    observations, actions, old_log_prob = self.policy.probe_batch
    with th.no_grad():
        after = [parameter.detach().clone() for parameter in parameters]
        for fraction in [*(0.5**halvings for halvings in range(MAX_HALVINGS + 1)), 0.0]:  # 0: the step undone, KL 0
            for parameter, old, new in zip(parameters, before, after, strict=True):
                parameter.copy_(old + fraction * (new - old))
            new_log_prob, _, _ = original_evaluate_actions(self.policy, observations, actions, with_critic=False)
            kl = approx_kl(old_log_prob, new_log_prob)
            if KL_TARGET <= 0 or kl <= KL_TARGET:
                break
    self.logger.record("train/approx_kl", kl)
    self.logger.record("train/step_fraction", fraction)
    return grad_norm


algorithm_module.evaluate_actions = evaluate_actions
REINFORCE._gradient_step = gradient_step  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
