"""
The estimator's gradient against the analytic policy gradient, on problems small enough to enumerate.

A baseline must not change the expected gradient, the sign must be that of gradient *ascent* on the return, and the
log-probabilities must be weighted by returns (reward-to-go), not per-step rewards: each test below fails if one of
these is wrong, since the sampled mean must match the exact gradient within a few standard errors.
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce.batch import to_torch
from sb3_reinforce.reinforce.estimator import (
    baseline_values,
    carried_step_weights,
    compute_advantages,
    policy_gradient_loss,
    update_return_moments,
    update_scale,
)
from tests.envs import TwoStepMDP
from tests.rollouts import start, whole


def test_gradient_descent_on_the_loss_raises_the_probability_of_good_actions():
    logits = th.zeros(3, requires_grad=True)
    actions = th.tensor([0, 1, 2])
    advantages = th.tensor([-1.0, 1.0, 0.0])
    loss = policy_gradient_loss(th.log_softmax(logits, 0)[actions], advantages)
    loss.backward()
    with th.no_grad():
        new = th.log_softmax(logits - 0.1 * logits.grad, 0)
    assert new[1] > np.log(1 / 3) > new[0]


def test_baseline_values_of_each_baseline_and_the_critic_read_on_the_returns_scale_without_gradient():
    critic = th.tensor([0.5, -1.0], requires_grad=True)
    values = baseline_values("value", critic, 10.0, 2.0)  # the critic predicts standardised returns
    assert th.equal(values, th.tensor([11.0, 8.0])) and not values.requires_grad  # the policy loss must not train it
    assert baseline_values("mean", None, 10.0, 2.0) == 10.0
    assert baseline_values("none", None, 10.0, 2.0) == 0.0
    with pytest.raises(ValueError, match="baseline='value' needs the critic's values"):
        baseline_values("value", None, 10.0, 2.0)


BANDIT_MEANS = th.tensor([1.0, 2.0, 0.0])


@pytest.mark.parametrize("shift", [0.0, -100.0])
@pytest.mark.parametrize("baseline", ["none", "mean", "constant"])
def test_bandit_gradient_is_unbiased_for_every_baseline(baseline, shift):
    generator = th.Generator().manual_seed(0)
    theta = th.tensor([0.2, -0.3, 0.1], requires_grad=True)
    probs = th.softmax(theta, 0)
    exact = th.autograd.grad((probs * BANDIT_MEANS).sum(), theta)[0]

    moments = None
    estimates = []
    for _ in range(400):
        actions = th.multinomial(probs.detach(), 256, replacement=True, generator=generator)
        returns = BANDIT_MEANS[actions] + th.randn(256, generator=generator) + shift
        if baseline == "mean":
            # As REINFORCE does: the running mean of earlier batches (this batch's own mean for the first one).
            b: float | th.Tensor = returns.mean().item() if moments is None else moments[0]
        elif baseline == "constant":
            b = th.full((256,), 7.0)  # any function of the state (one state here) is a valid baseline
        else:
            b = 0.0
        loss = policy_gradient_loss(th.log_softmax(theta, 0)[actions], compute_advantages(returns, b, normalize=False))
        estimates.append(-th.autograd.grad(loss, theta)[0])
        moments = update_return_moments(moments, returns.mean().item(), returns.var().item(), 0.9)

    estimates_t = th.stack(estimates)
    mean, stderr = estimates_t.mean(0), estimates_t.std(0) / np.sqrt(len(estimates))
    assert th.all((mean - exact).abs() < 4 * stderr + 1e-4), (mean, exact, stderr)
    if shift == 0.0:
        assert th.all(exact[1:].abs() > 8 * stderr[1:]), "the test must be able to tell a wrong sign from the right one"


def _exact_two_step_gradient(model: REINFORCE, gamma: float) -> th.Tensor:
    """d J / d (action_net.weight), J the expected discounted return of the 2-step MDP, by enumeration."""
    weight = model.policy.action_net.weight.detach().clone().requires_grad_(True)
    bias = model.policy.action_net.bias.detach()
    probs = th.softmax(weight.T + bias, dim=1)  # one row per state (the features are one-hot states)
    r1 = {s: th.as_tensor(r, dtype=th.float32) for s, r in TwoStepMDP.R1.items()}
    value = sum(probs[0, a0] * (TwoStepMDP.R0[a0] + gamma * (probs[1 + a0] * r1[1 + a0]).sum()) for a0 in range(2))
    return th.autograd.grad(value, weight)[0]


@pytest.mark.parametrize("baseline", ["none", "mean", "value"])
def test_two_step_mdp_gradient_of_train_matches_the_analytic_gradient(baseline):
    # gamma = 1: the estimator, like A2C/PPO, leaves out Sutton & Barto's gamma^t factor, so with gamma < 1 it follows
    # the discounted return from each visited state, not the exact gradient of the discounted objective (see README).
    gamma = 1.0
    env = make_vec_env(TwoStepMDP, n_envs=16, seed=0)
    model = REINFORCE(
        "MlpPolicy",
        env,
        n_steps=64,
        gamma=gamma,
        baseline=baseline,
        normalize_advantage=False,
        max_grad_norm=None,
        policy_kwargs=dict(net_arch=dict(pi=[], vf=[])),
        seed=0,
    )
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.tensor([[0.3, -0.2, 0.5], [-0.4, 0.1, 0.0]]))
        model.policy.action_net.bias.copy_(th.tensor([0.1, -0.1]))
    exact = _exact_two_step_gradient(model, gamma)

    # Record the gradient train() would apply and keep the weights fixed, so that every batch is an i.i.d. sample.
    grads = []
    model.policy.optimizer.step = lambda *args, **kwargs: grads.append(model.policy.action_net.weight.grad.clone())
    model.learn(50 * 64 * 16)
    assert len(grads) == 50

    # Each update averages over steps, two per episode: E[gradient of the loss] = -grad J / 2.
    estimates = -2 * th.stack(grads)
    mean, stderr = estimates.mean(0), estimates.std(0) / np.sqrt(len(grads))
    assert th.all((mean - exact).abs() < 4 * stderr + 1e-3), (mean, exact, stderr)
    # Power: in state 0 the immediate reward favours action 0 but the return favours action 1, so weighting by
    # per-step rewards would flip the sign of this column; the test can tell.
    assert exact[1, 0] > 0 > exact[0, 0]
    assert th.all(exact[:, 0].abs() > 8 * stderr[:, 0])


def _whole_batch_gradient(model: REINFORCE, batch, returns: th.Tensor, mean: float, std: float) -> list[th.Tensor]:
    """The gradient of REINFORCE's loss on the whole batch at once, written out from the estimator's functions."""
    observations, actions, behaviour_log_prob = to_torch(whole(batch), model.action_space, model.device)
    values = None
    if model.baseline == "value":
        values, log_prob, entropy = model.policy.evaluate_actions(observations, actions)
        values = values.flatten()
    else:
        log_prob, entropy = model.policy.evaluate_actor(observations, actions)
    weights = carried_step_weights(log_prob, behaviour_log_prob, batch.carried, model.carry_ratio_clip)
    advantages = compute_advantages(returns, baseline_values(model.baseline, values, mean, std), model.normalize_advantage)
    loss = policy_gradient_loss(log_prob, advantages, weights) + model.ent_coef * -th.mean(entropy)
    if values is not None:
        loss = loss + model.vf_coef * th.nn.functional.mse_loss(values, (returns - mean) / std)
    model.policy.optimizer.zero_grad()
    loss.backward()
    return [parameter.grad.clone() for parameter in model.policy.parameters() if parameter.grad is not None]


@pytest.mark.parametrize(
    ("baseline", "normalize_advantage"), [("none", True), ("mean", False), ("value", False), ("value", True)]
)
def test_the_update_chunk_by_chunk_has_the_whole_batch_gradient(baseline, normalize_advantage):
    """One chunk: the very same gradient; 7-step chunks (carried steps and truncations in the batch): within 1e-6."""
    model = REINFORCE(
        "MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), n_steps=80, baseline=baseline,
        normalize_advantage=normalize_advantage, ent_coef=0.01, seed=0,
    )  # fmt: skip
    collect = start(model)
    collect(), collect()
    batch = collect()  # 240 steps an env: the first episodes (200 steps) ended, with steps held over from earlier rollouts
    assert batch.n_fresh < len(batch) and (batch.discount is not None) == (baseline == "value")
    _, (mean, std) = update_scale(None, batch.returns(), baseline)
    returns = th.as_tensor(batch.returns((mean, std)) if baseline == "value" else batch.returns())
    expected = _whole_batch_gradient(model, batch, returns, mean, std)

    for chunk_size, tolerance in ((len(batch), 0.0), (7, 1e-6)):
        model.update_chunk_size = chunk_size
        model.policy.optimizer.zero_grad()
        model._accumulate_gradient(batch, returns, mean, std)
        gradient = [parameter.grad for parameter in model.policy.parameters() if parameter.grad is not None]
        assert len(gradient) == len(expected)
        if tolerance == 0.0:
            assert all(th.equal(got, want) for got, want in zip(gradient, expected, strict=True))
        else:  # the relative difference of the whole gradient (float32 sums taken in another order)
            got, want = th.cat([g.flatten() for g in gradient]), th.cat([g.flatten() for g in expected])
            assert (got - want).norm() <= tolerance * want.norm()
