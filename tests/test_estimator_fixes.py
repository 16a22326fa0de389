"""
The estimator after an abandoned rollout, after batches whose returns were all equal, and on its first update.

Checked through the public API (``learn``, the logger's ``train/*`` values, the policy's probabilities) so that the
tests hold whatever the internals look like.
"""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_reinforce import REINFORCE, NonFiniteError
from sb3_reinforce.reinforce.estimator import return_scale, update_return_moments
from tests.envs import CountingEnv, LateRewardBandit


class StopAfter(BaseCallback):
    """Abandons the rollout at its ``n``-th step (the env has taken that step)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def _on_step(self) -> bool:
        return self.n_calls < self.n


class TrainLog(BaseCallback):
    """The ``train/*`` values of every update, read when the next rollout starts, and those of the last update."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[dict[str, float]] = []
        self.seen = 0

    def _read(self) -> None:
        if self.model._n_updates > self.seen:
            self.seen = self.model._n_updates
            self.updates.append({k: v for k, v in self.logger.name_to_value.items() if k.startswith("train/")})

    def _on_rollout_start(self) -> None:
        self._read()

    def _on_training_end(self) -> None:
        self._read()

    def _on_step(self) -> bool:
        return True


def _counting_model(length: int, env_cls: type = CountingEnv, **env_kwargs) -> REINFORCE:
    env = DummyVecEnv([lambda: env_cls(length=length, **env_kwargs)])
    return REINFORCE("MlpPolicy", env, n_steps=4, gamma=1.0, baseline="none", incomplete_episodes="carry", seed=0)


@pytest.mark.parametrize(
    ("length", "carried", "return_mean"),
    [
        # Episode 0 (10 steps): 4 steps held, 3 abandoned, then steps 7-9 end it. The held steps' true returns are
        # 10, 9, 8, 7, but the env went on without them: they are dropped, and only steps 7-9 (returns 3, 2, 1) count.
        # Before the fix: the held steps were used with returns 7, 6, 5, 4 (4 carried steps, return mean 4).
        (10, 0, 2.0),
        # Episode 0 (6 steps) ends inside the abandoned part; its held steps were joined to episode 1 (8 carried
        # steps, returns 9..2, mean 5). Now only episode 1's own held steps 1-4 (returns 5, 4, 3, 2) and step 5.
        (6, 4, 3.0),
    ],
)
def test_a_rollout_stopped_by_a_callback_drops_the_held_over_steps(length, carried, return_mean):
    model = _counting_model(length)
    model.learn(4)
    model.learn(4, callback=StopAfter(3), reset_num_timesteps=False)
    log = TrainLog()
    model.learn(8, callback=log, reset_num_timesteps=False)
    assert len(log.updates) == 1
    assert log.updates[0]["train/carried_steps"] == carried
    assert log.updates[0]["train/return_mean"] == pytest.approx(return_mean)


class NanRewardOnce(CountingEnv):
    """A CountingEnv whose ``at``-th step (counting from 1 over the env's life) returns a NaN reward."""

    def __init__(self, length: int, at: int):
        super().__init__(length=length)
        self.at, self.calls = at, 0

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        self.calls += 1
        return obs, float("nan") if self.calls == self.at else reward, terminated, truncated, info


def test_a_rollout_abandoned_by_an_error_drops_the_held_over_steps():
    model = _counting_model(10, env_cls=NanRewardOnce, at=6)
    model.learn(4)  # episode 0, steps 0-3 held over
    with pytest.raises(NonFiniteError):
        model.learn(4, reset_num_timesteps=False)  # steps 4-7, with a NaN reward at step 5
    log = TrainLog()
    model.learn(4, callback=log, reset_num_timesteps=False)  # steps 8, 9 end episode 0, then episode 1
    # Before the fix: the held steps 0-3 got returns 6, 5, 4, 3 (their true returns are 10, 9, 8, 7).
    assert log.updates[0]["train/carried_steps"] == 0
    assert log.updates[0]["train/return_mean"] == pytest.approx(1.5)  # steps 8, 9: returns 2, 1


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
        (17, 1.0, 2),  # the reproduction: batches 1 and 2 return 0, batch 3 is the first with a success
        (161, 1000.0, 20),  # 20 updates of zeros, then rewards of 1000
    ],
)
def test_the_value_baseline_learns_from_the_first_success_after_zero_variance_batches(first_paid, reward, silent_updates):
    value = _late_reward_run("value", first_paid, reward, silent_updates + 1)
    mean = _late_reward_run("mean", first_paid, reward, silent_updates + 1)
    informative = silent_updates  # index in updates of the first batch with a success
    # Before the fix the critic's targets were about reward / 1e-8 here: gradient norms of 7.5e7 (reward 1) and 7.5e10
    # (reward 1000), clipped to max_grad_norm with the policy's share squashed to nothing (P(a=1) did not move).
    # Now the gradient is of the size the "mean" baseline gives on the same batch: the critic's targets are a few
    # units, so its share of the clipped gradient is comparable to the policy's.
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


def test_held_over_steps_are_copies_that_do_not_keep_old_rollout_buffers_alive():
    env = DummyVecEnv([lambda: CountingEnv(length=50) for _ in range(2)])
    model = REINFORCE("MlpPolicy", env, n_steps=8, baseline="none", incomplete_episodes="carry", seed=0)
    model.learn(16)  # one rollout of 8 steps per env, all held over
    buffer = model.rollout_buffer
    for env in range(2):
        [held] = model._held_over._blocks[env]  # one block per rollout
        assert len(held) == 8
        for array in (held.observations, held.actions, held.rewards, held.log_probs):
            assert array.base is None or array.base.nbytes == array.nbytes  # owns its memory, no larger block
            assert not np.shares_memory(array, buffer.observations) and not np.shares_memory(array, buffer.rewards)


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
