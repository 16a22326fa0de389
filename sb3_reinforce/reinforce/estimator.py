"""
The REINFORCE estimator as small pure functions.

Everything the algorithm computes from a rollout goes through these functions, so the tests can check each piece
on hand-computed values and on problems small enough to enumerate:

- :func:`discounted_returns`: Monte Carlo reward-to-go per env, across episode boundaries;
- :func:`bootstrap_terms`: what a critic adds to those returns (time-limit truncations, ``"bootstrap"``);
- :func:`compute_advantages`: return minus baseline, optionally standardised;
- :func:`truncated_importance_weights`, :func:`carried_step_weights`: the correction for steps carried over from
  an earlier policy;
- :func:`policy_gradient_loss`: the surrogate whose gradient is the policy-gradient estimate;
- :func:`update_return_moments`: running mean and variance of returns, for the ``"mean"`` and ``"value"`` baselines;
- :func:`return_scale`: the ``(mean, std)`` the critic is trained and read on;
- :func:`update_scale`: both, for one update.

As in A2C and PPO, Sutton & Barto's ``gamma^t`` factor is left out of the loss. A time-limit truncation is not a
terminal: with a critic the return is bootstrapped there with ``gamma * V(terminal observation)``, without one it
ends there; no critic value is ever added to the rewards.
"""

import math

import numpy as np
import torch as th


def discounted_returns(
    rewards: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    last_values: np.ndarray | None = None,
    truncation_values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Monte Carlo reward-to-go ``G_t = r_t + gamma * G_{t+1}`` for every step of a rollout, per env.

    The recursion restarts wherever an episode ended (``dones[t, i]``), so the return of a step only ever sums the
    rewards of its own episode. The loop runs backwards over time and is vectorised over the envs.

    :param rewards: Rewards, shape ``(n_steps, n_envs)``. ``rewards[t, i]`` is the reward that followed the action
        taken at step ``t`` in env ``i``.
    :param dones: Whether the episode of env ``i`` ended with step ``t`` (terminated or truncated), same shape.
    :param gamma: Discount factor in [0, 1].
    :param last_values: What follows the last step of each env when its episode has not ended there, shape
        ``(n_envs,)``: 0 (the default) gives the return observed so far, ``V(s_T)`` bootstraps like A2C, and the
        return of the next segment of the same episode continues it exactly (this is how carried steps are completed).
    :param truncation_values: Value of the state that follows a step whose episode was *truncated* by a time limit,
        ``V(s_{t+1})``, and 0 everywhere else, same shape as ``rewards``. It is added as ``gamma * V`` at the end of
        that episode. ``None`` (the default) ends the return at the truncation, which is what REINFORCE without a
        critic does.
    :return: ``(returns, complete)``: the returns, shape ``(n_steps, n_envs)`` as float32, and a boolean mask that is
        True where the return is exact, i.e. where the step's episode ends within the rollout (at or after the step).
        Where it is False the return is partial: it stops at the rollout's end and includes ``last_values``.
    """
    returns = reward_to_go(rewards, dones, gamma, last_values, truncation_values)
    # A step's return is exact iff an episode end occurs at or after it: a reversed cumulative "or" over time.
    complete = np.logical_or.accumulate(np.asarray(dones, dtype=bool)[::-1], axis=0)[::-1]
    return returns.astype(np.float32), complete


def reward_to_go(
    rewards: np.ndarray,
    dones: np.ndarray,
    gamma: float,
    last_values: np.ndarray | None = None,
    truncation_values: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`discounted_returns`' returns in float64 (no mask): the recursion itself."""
    rewards = np.asarray(rewards, dtype=np.float64)
    dones = np.asarray(dones, dtype=bool)
    if rewards.ndim != 2 or dones.shape != rewards.shape:
        raise ValueError(f"rewards and dones must both have shape (n_steps, n_envs), got {rewards.shape} and {dones.shape}")
    n_steps, n_envs = rewards.shape
    next_return = np.zeros(n_envs) if last_values is None else np.asarray(last_values, dtype=np.float64).reshape(n_envs)
    ends = None if truncation_values is None else np.asarray(truncation_values, dtype=np.float64)
    if ends is not None and ends.shape != rewards.shape:
        raise ValueError(f"truncation_values must have shape {rewards.shape}, got {ends.shape}")

    returns = np.empty(rewards.shape)
    for step in reversed(range(n_steps)):
        following = np.where(dones[step], 0.0 if ends is None else ends[step], next_return)
        next_return = rewards[step] + gamma * following
        returns[step] = next_return
    return returns


def bootstrap_terms(
    dones: np.ndarray,
    gamma: float,
    truncated: np.ndarray,
    truncation_critic: np.ndarray,
    last_critic: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    What a critic adds to each step's return, as a discount and the critic output it applies to: the return with a
    critic is ``G_t + discount_t * (mean + std * critic_t)``, with ``G_t`` the return the rewards alone give
    (:func:`discounted_returns`) and ``(mean, std)`` the scale the critic's standardised output is read on. Returns
    are linear in the values that end them, so they can be computed before that scale is known (it depends on the
    returns the rewards give).

    :param dones: Whether each env's episode ended with each step, ``(n_steps, n_envs)``.
    :param gamma: Discount factor.
    :param truncated: Where an episode was truncated by a time limit (its return ends with ``gamma * V(s_{t+1})``).
    :param truncation_critic: The critic's output for the state after a truncation (read where ``truncated``).
    :param last_critic: The critic's output for the state after the rollout, per env, for the steps whose episode has
        not ended (``incomplete_episodes="bootstrap"``); ``None``: those returns end at the rollout's end.
    :return: ``(discount, critic)``, both ``(n_steps, n_envs)``: ``gamma^k`` for a step ``k`` steps before the value
        that ends its return (0 where a termination ends it), and that value's critic output.
    """
    n_steps, n_envs = dones.shape
    next_discount = np.zeros(n_envs) if last_critic is None else np.ones(n_envs)
    next_critic = np.zeros(n_envs, dtype=np.float32) if last_critic is None else np.asarray(last_critic, dtype=np.float32)
    discount, critic = np.empty((n_steps, n_envs)), np.empty((n_steps, n_envs), dtype=np.float32)
    for step in reversed(range(n_steps)):
        next_discount = gamma * np.where(dones[step], truncated[step], next_discount)
        next_critic = np.where(dones[step], truncation_critic[step], next_critic)
        discount[step], critic[step] = next_discount, next_critic
    return discount, critic


def baseline_values(baseline: str, values: th.Tensor | None, return_mean: float, return_std: float) -> th.Tensor | float:
    """
    ``b_t`` in ``A_t = G_t - b_t`` for ``baseline``: 0 (``"none"``), the running mean of the returns (``"mean"``), or
    the critic's ``values`` read on the returns' scale, ``return_mean + return_std * values`` and detached, so that the
    policy loss does not train the critic (``"value"``, the only baseline with ``values``: the critic predicts
    standardised returns).
    """
    if values is not None:
        return return_mean + return_std * values.detach()
    if baseline == "value":
        raise ValueError("baseline='value' needs the critic's values, got values=None")
    return return_mean if baseline == "mean" else 0.0


def compute_advantages(returns: th.Tensor, baseline: th.Tensor | float, normalize: bool) -> th.Tensor:
    """
    The weight of each log-probability in the policy gradient: ``A_t = G_t - b(s_t)``.

    A baseline that does not depend on the action taken at ``t`` leaves the expected gradient unchanged and only
    lowers its variance.

    :param returns: Monte Carlo returns ``G_t``, shape ``(batch,)``.
    :param baseline: ``b(s_t)``: 0 for none, a scalar running mean, or the (detached) critic values, shape ``(batch,)``.
    :param normalize: Standardise the advantages over the batch (mean 0, std 1). A batch of one is only centred.
    :return: The advantages, shape ``(batch,)``. No gradient flows through them.
    """
    advantages = (returns - baseline).detach()
    if normalize:
        advantages = advantages - advantages.mean()
        if advantages.numel() > 1:
            advantages = advantages / (advantages.std() + 1e-8)
    return advantages


def truncated_importance_weights(log_prob: th.Tensor, behaviour_log_prob: th.Tensor, clip: float) -> th.Tensor:
    """
    Per-step importance weight ``min(pi(a|s) / beta(a|s), clip)`` for steps sampled by an earlier policy ``beta``.

    The weight is detached: it rescales the score ``grad log pi(a|s)`` of a carried step, it is not differentiated.

    :param log_prob: ``log pi(a|s)`` under the current policy.
    :param behaviour_log_prob: ``log beta(a|s)`` recorded when the action was sampled.
    :param clip: Upper bound on the weight (> 0).
    :return: The weights, same shape as ``log_prob``.
    """
    return th.exp(log_prob.detach() - behaviour_log_prob).clamp(max=clip)


def carried_step_weights(
    log_prob: th.Tensor, behaviour_log_prob: th.Tensor, carried: np.ndarray, clip: float
) -> th.Tensor | None:
    """
    The importance weights of a batch: 1 for the steps of this rollout, :func:`truncated_importance_weights` for the
    steps carried over from earlier ones; ``None`` (all 1) when nothing is carried.

    :param log_prob: ``log pi(a|s)`` of every step under the current policy.
    :param behaviour_log_prob: ``log beta(a|s)`` recorded when each action was sampled.
    :param carried: Boolean mask of the carried steps.
    :param clip: Upper bound on the weights.
    """
    if not carried.any():
        return None
    mask = th.as_tensor(carried, device=log_prob.device)
    weights = th.ones_like(log_prob)
    weights[mask] = truncated_importance_weights(log_prob[mask], behaviour_log_prob[mask], clip)
    return weights


def policy_gradient_loss(log_prob: th.Tensor, advantages: th.Tensor, weights: th.Tensor | None = None) -> th.Tensor:
    """
    The REINFORCE surrogate ``-mean(w_t * A_t * log pi(a_t|s_t))``.

    Gradient *descent* on it is gradient *ascent* on the expected return: its gradient is minus the policy-gradient
    estimate ``mean(w_t * A_t * grad log pi(a_t|s_t))``. ``A_t`` must be a return (or return minus baseline), never a
    per-step reward, and must carry no gradient.

    :param log_prob: ``log pi(a_t|s_t)`` of the actions that were sampled, with gradient.
    :param advantages: Detached weights ``A_t``.
    :param weights: Optional detached importance weights ``w_t``; ``None`` means on-policy (all 1).
    :return: The scalar loss.
    """
    weighted = advantages.detach() if weights is None else advantages.detach() * weights.detach()
    return -(weighted * log_prob).mean()


# Weight of the past in the running mean and variance of returns (``baseline="mean"`` and ``"value"``).
RETURN_MOMENTS_MOMENTUM = 0.9


def update_return_moments(
    moments: tuple[float, float] | None, batch_mean: float, batch_var: float, momentum: float
) -> tuple[float, float]:
    """
    Exponential moving averages of the mean and variance of returns.

    ``baseline="mean"`` subtracts the running mean of the batches *before* the current one, so that it never depends
    on the actions it weighs. ``baseline="value"`` trains its critic on returns standardised with the moments updated
    with the current batch (see :func:`return_scale`), so that the critic works at any reward scale float32 holds.

    The variance is that of the mixture the averages describe (weight ``momentum`` on the old returns,
    ``1 - momentum`` on the batch): it includes the drift of the mean between them,
    ``momentum * (1 - momentum) * (batch_mean - mean)^2``. Without that term, batches whose returns are each constant
    (say all 0 while a sparse reward has not been found yet) would leave a variance of 0 whatever the history, and
    the first different return would be standardised by nothing.

    :param moments: Current ``(mean, variance)``, or ``None`` before the first batch.
    :param batch_mean: Mean return of the batch.
    :param batch_var: Variance of the returns of the batch.
    :param momentum: Weight of the old averages in [0, 1).
    :return: The new ``(mean, variance)`` (the batch's own for the first batch).
    """
    if moments is None:
        return float(batch_mean), float(batch_var)
    mean, var = moments
    drift = batch_mean - mean
    return (
        float(momentum * mean + (1.0 - momentum) * batch_mean),
        float(momentum * var + (1.0 - momentum) * batch_var + momentum * (1.0 - momentum) * drift**2),
    )


# The critic's standard deviation is at least this fraction of the returns' root mean square: the resolution of the
# float32 returns, below which a spread is rounding noise.
RETURN_SCALE_FLOOR = float(np.finfo(np.float32).eps)


def return_scale(moments: tuple[float, float]) -> tuple[float, float]:
    """
    The ``(mean, std)`` that maps the critic's standardised output to a return: ``V(s) = mean + std * critic(s)``.

    ``moments`` are those updated with the batch at hand (:func:`update_return_moments`, whose variance includes the
    drift of the mean), so a batch whose returns differ from all earlier ones is standardised by a spread that
    includes its own: after any number of batches that all returned 0, a first success gives critic targets of a few
    units, not 1e8. The standard deviation is floored at :data:`RETURN_SCALE_FLOOR` (float32's resolution) times the
    returns' root mean square ``sqrt(mean^2 + var)``, a fraction of the returns' own scale whatever the reward scale,
    and at 1e-8 when every return was exactly 0 (every target is then 0 too).

    :param moments: ``(mean, variance)`` of returns.
    :return: ``(mean, std)``.
    """
    mean, var = moments
    return mean, max(math.sqrt(var), RETURN_SCALE_FLOOR * math.sqrt(mean**2 + var), 1e-8)


def update_scale(
    moments: tuple[float, float] | None, returns: np.ndarray, baseline: str
) -> tuple[tuple[float, float], tuple[float, float]]:
    """
    The running moments updated with a batch's returns (those the rewards give, no critic value in them; in float32,
    or float64 where float32 overflows, as the variance of returns of about 1e19 does), and the
    ``(mean, std)`` of the update: the scale the critic is trained and read on (:func:`return_scale`), with for
    ``baseline="mean"`` the running mean of the *earlier* batches, independent of the actions it weighs.

    :param moments: The running ``(mean, variance)`` before this batch, or ``None`` before the first one.
    :param returns: The batch's returns.
    :param baseline: ``"none"``, ``"mean"`` or ``"value"``.
    :return: ``(new moments, (mean, std))``.
    """
    observed = th.as_tensor(returns)
    batch_mean, batch_var = observed.mean().item(), observed.var(unbiased=False).item()
    if not (math.isfinite(batch_mean) and math.isfinite(batch_var)):  # beyond float32 (returns of about 1e19 and more)
        batch_mean, batch_var = float(np.mean(returns, dtype=np.float64)), float(np.var(returns, dtype=np.float64))
    updated = update_return_moments(moments, batch_mean, batch_var, RETURN_MOMENTS_MOMENTUM)
    mean, std = return_scale(updated)
    if baseline == "mean" and moments is not None:
        mean = moments[0]
    return updated, (mean, std)
