"""
A measurement, not a feature: ``sb3-reinforce-zoo train`` with several gradient steps per batch, to see whether what
separates REINFORCE's final Acrobot-v1 policy from PPO's is PPO's several epochs per batch (issue 18's Acrobot target;
the searches page, Acrobot section, "Where the plateau comes from").

The first step on a batch is :class:`~sb3_reinforce.REINFORCE`'s own (one Adam step on its loss). With ``EPOCHS`` = K
> 1, K - 1 more steps follow on the same batch, each on PPO's clipped surrogate
``-mean(min(r A, clip(r, 1 - CLIP, 1 + CLIP) A))`` (``r = pi_new(a|s) / pi_old(a|s)``, ``pi_old`` the policy that
sampled the batch, ``A`` the advantages REINFORCE computed, times the carried steps' weights), plus the entropy and
value terms as REINFORCE weighs them. At ``r = 1`` the clipped surrogate's gradient is REINFORCE's, so ``EPOCHS=1`` is
REINFORCE exactly; K > 1 is no longer REINFORCE (it is PPO with Monte Carlo advantages and one minibatch).
``CLIP`` defaults to 0.2 (PPO's). ``train/extra_epochs_clip_fraction`` is logged (the fraction of the batch clipped in
the last extra step). Every argument goes to the zoo's command line::

    EPOCHS=4 python benchmarks/searches/epochs_probe.py train --algo reinforce --env Acrobot-v1 --seed 0 -n 100000 \
        --eval-freq 4000 --eval-episodes 10 --n-eval-envs 1 --num-threads 1 --device cpu -f LOGDIR

It wraps private functions of the algorithm, so it is tied to this version of ``sb3_reinforce``. Result:
``README.md`` of this folder, Acrobot section.
"""

import os
import sys
from typing import Any

import torch as th
from torch.nn import functional as F

import sb3_reinforce.reinforce.reinforce as algorithm_module
from sb3_reinforce.zoo import main

EPOCHS = int(os.environ.get("EPOCHS", "1") or 1)
CLIP = float(os.environ.get("CLIP", "0.2") or 0.2)
REINFORCE = algorithm_module.REINFORCE
original = {
    name: getattr(algorithm_module, name)
    for name in ("evaluate_actions", "carried_step_weights", "baseline_values", "compute_advantages")
}
original_gradient_step = REINFORCE._gradient_step
batch: dict[str, Any] = {}  # what train() computed for the update at hand


def evaluate_actions(policy: Any, observations: Any, actions: th.Tensor, with_critic: bool) -> Any:
    log_prob, entropy, values = original["evaluate_actions"](policy, observations, actions, with_critic=with_critic)
    batch.update(observations=observations, actions=actions, with_critic=with_critic, old_log_prob=log_prob.detach())
    return log_prob, entropy, values


def carried_step_weights(*args: Any) -> Any:
    batch["weights"] = weights = original["carried_step_weights"](*args)
    return weights


def baseline_values(baseline: str, values: Any, return_mean: float, return_std: float) -> Any:
    batch.update(return_mean=return_mean, return_std=return_std)
    return original["baseline_values"](baseline, values, return_mean, return_std)


def compute_advantages(returns: th.Tensor, baseline: Any, normalize: bool) -> th.Tensor:
    advantages = original["compute_advantages"](returns, baseline, normalize)
    batch.update(returns=returns, advantages=advantages.detach())
    return advantages


def gradient_step(self: Any, loss: th.Tensor) -> float:
    grad_norm = original_gradient_step(self, loss)  # REINFORCE's own step
    advantages = batch["advantages"] if batch["weights"] is None else batch["advantages"] * batch["weights"].detach()
    for _ in range(EPOCHS - 1):
        log_prob, entropy, values = original["evaluate_actions"](
            self.policy, batch["observations"], batch["actions"], with_critic=batch["with_critic"]
        )
        ratio = th.exp(log_prob - batch["old_log_prob"])
        clipped = th.clamp(ratio, 1.0 - CLIP, 1.0 + CLIP)
        extra_loss = -th.min(ratio * advantages, clipped * advantages).mean()
        extra_loss = extra_loss + self.ent_coef * (-th.mean(entropy) if entropy is not None else th.mean(log_prob))
        if values is not None:
            targets = (batch["returns"] - batch["return_mean"]) / batch["return_std"]
            extra_loss = extra_loss + self.vf_coef * F.mse_loss(values, targets)
        original_gradient_step(self, extra_loss)
        self.logger.record("train/extra_epochs_clip_fraction", float(((ratio - 1.0).abs() > CLIP).float().mean()))
    return grad_norm


for name, wrapper in (
    ("evaluate_actions", evaluate_actions),
    ("carried_step_weights", carried_step_weights),
    ("baseline_values", baseline_values),
    ("compute_advantages", compute_advantages),
):
    setattr(algorithm_module, name, wrapper)
REINFORCE._gradient_step = gradient_step  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
