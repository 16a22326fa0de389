"""
The value baseline's scale: the critic is trained and read on the running moments of the returns, so that it learns
from a first success after batches whose returns were all equal, reads truncation values on the scale it is trained
on, and works at any reward scale. Checked through the public API (``learn``, the logger's ``train/*`` values, the
policy's probabilities).
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce.estimator import return_scale, update_return_moments
from tests.callbacks import TrainLog
from tests.envs import CountingEnv, LateRewardBandit


def _probability_of_action_1(model: REINFORCE) -> float:
    with th.no_grad():
        return model.policy.get_distribution(th.zeros(1, 1)).distribution.probs[0, 1].item()


class ProbabilityLog(TrainLog):
    """Also the probability of action 1 of LateRewardBandit after every update."""

    def __init__(self) -> None:
        super().__init__()
        self.probabilities = [0.5]

    def _read(self) -> None:
        if self.model._n_updates > self.seen:
            self.probabilities.append(_probability_of_action_1(self.model))
        super()._read()


def _late_reward_run(baseline: str, first_paid: int, reward: float, updates: int) -> ProbabilityLog:
    env = DummyVecEnv([lambda: LateRewardBandit(first_paid=first_paid, reward=reward)])
    model = REINFORCE("MlpPolicy", env, n_steps=8, baseline=baseline, learning_rate=1e-2, seed=0)
    log = ProbabilityLog()
    model.learn(8 * updates, callback=log)
    return log


@pytest.mark.parametrize(
    ("first_paid", "reward", "silent_updates"),
    [
        (17, 1.0, 2),  # batches 1 and 2 return 0, batch 3 is the first with a success
        (161, 1000.0, 20),  # 20 updates of zeros, then rewards of 1000
    ],
)
def test_the_value_baseline_learns_from_the_first_success_after_zero_variance_batches(first_paid, reward, silent_updates):
    value = _late_reward_run("value", first_paid, reward, silent_updates + 1)
    mean = _late_reward_run("mean", first_paid, reward, silent_updates + 1)
    informative = silent_updates  # index in updates of the first batch with a success
    # A critic read on a scale floored at 1e-8 would get targets of about reward / 1e-8 here: gradient norms of 7.5e7
    # (reward 1) and 7.5e10 (reward 1000), clipped to max_grad_norm with the policy's share squashed to nothing. The
    # gradient is of the size the "mean" baseline gives on the same batch: the critic's targets are a few units, so
    # its share of the clipped gradient is comparable to the policy's.
    value_norm = value.updates[informative]["train/grad_norm"]
    mean_norm = mean.updates[informative]["train/grad_norm"]
    assert value_norm < 20 * max(mean_norm, 1.0), (value_norm, mean_norm)
    # The policy moves as much as with the "mean" baseline, within a factor 2: Adam normalises each weight's step, so
    # the first informative step moves each weight by about the learning rate whatever the gradient's scale; what is
    # left is the baselines' difference (G minus the moments' mean including this batch, against G minus 0).
    value_move = value.probabilities[informative + 1] - value.probabilities[informative]
    mean_move = mean.probabilities[informative + 1] - mean.probabilities[informative]
    assert mean_move > 1e-3
    assert 0.5 * mean_move < value_move < 2 * mean_move, (value_move, mean_move)


def test_the_first_update_reads_truncation_values_on_the_scale_it_trains_the_critic_on():
    """Reward -100 per step, 3-step time limit, gamma 0.9: the critic target of the truncated step is consistent."""
    env = DummyVecEnv([lambda: CountingEnv(length=3, truncate=True, reward=-100.0)])
    model = REINFORCE("MlpPolicy", env, n_steps=3, gamma=0.9, baseline="value", incomplete_episodes="drop", seed=0)
    observations = th.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    terminal = th.tensor([[3.0, 0.0]])
    with th.no_grad():
        critic = model.policy.predict_values(observations).flatten().double()
        critic_terminal = model.policy.predict_values(terminal).item()
    log = TrainLog()
    model.learn(3, callback=log)
    mean, std = return_scale(model._return_moments)
    # Moments of the observed returns (-271, -190, -100), updated from nothing: the batch's own.
    assert mean == pytest.approx(-187.0) and std == pytest.approx(np.std([-271.0, -190.0, -100.0]), rel=1e-6)
    bootstrap = mean + std * critic_terminal  # V(s_3) on the scale of this update (it was mapped with (0, 1) before)
    returns = th.tensor([-271.0, -190.0, -100.0], dtype=th.float64) + th.tensor([0.729, 0.81, 0.9]) * bootstrap
    expected_value_loss = th.mean((critic - (returns - mean) / std) ** 2).item()
    assert log.updates[0]["train/value_loss"] == pytest.approx(expected_value_loss, rel=1e-4)


def test_return_moments_include_the_drift_of_the_mean_and_the_scale_is_floored():
    # Batches that each had one return value: no spread within any batch, but the mean moved from 0 to 1.
    assert update_return_moments((0.0, 0.0), 1.0, 0.0, 0.9) == pytest.approx((0.1, 0.09))
    # The variance is the mixture's: 0.9 of N(0, 1) and 0.1 of N(3, 4).
    assert update_return_moments((0.0, 1.0), 3.0, 4.0, 0.9) == pytest.approx((0.3, 0.9 + 0.4 + 0.81))
    assert update_return_moments(None, 5.0, 2.0, 0.9) == (5.0, 2.0)
    assert return_scale((3.0, 4.0)) == (3.0, 2.0)
    mean, std = return_scale((-1e6, 0.0))  # every return -1e6: the floor is float32's resolution at that scale
    assert mean == -1e6 and std == pytest.approx(1e6 * np.finfo(np.float32).eps)
    assert return_scale((0.0, 0.0)) == (0.0, 1e-8)
