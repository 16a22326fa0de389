"""Monte Carlo returns, against hand-computed values, and what each incomplete-episodes mode does with them."""

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce.estimator import bootstrap_terms, discounted_returns
from tests.envs import CountingEnv
from tests.rollouts import held_observations, start, whole


def test_one_env_no_episode_end():
    returns, complete = discounted_returns(np.array([[1.0], [2.0], [3.0], [4.0]]), np.zeros((4, 1)), gamma=0.5)
    # G3 = 4, G2 = 3 + 2 = 5, G1 = 2 + 2.5 = 4.5, G0 = 1 + 2.25 = 3.25
    np.testing.assert_allclose(returns[:, 0], [3.25, 4.5, 5.0, 4.0])
    assert not complete.any()


def test_returns_are_not_rewards():
    rewards = np.array([[0.0], [0.0], [1.0]])
    returns, _ = discounted_returns(rewards, np.array([[0], [0], [1]]), gamma=0.9)
    # A reward at the end of the episode is credited to every earlier step, discounted.
    np.testing.assert_allclose(returns[:, 0], [0.81, 0.9, 1.0], rtol=1e-6)


def test_episode_ends_mid_rollout_and_gamma():
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    dones = np.array([[0], [1], [0], [0]])
    returns, complete = discounted_returns(rewards, dones, gamma=0.5)
    np.testing.assert_allclose(returns[:, 0], [2.0, 2.0, 5.0, 4.0])
    np.testing.assert_array_equal(complete[:, 0], [True, True, False, False])
    # gamma = 1: undiscounted sums; gamma = 0: the returns are the rewards.
    np.testing.assert_allclose(discounted_returns(rewards, dones, 1.0)[0][:, 0], [3.0, 2.0, 7.0, 4.0])
    np.testing.assert_allclose(discounted_returns(rewards, dones, 0.0)[0][:, 0], [1.0, 2.0, 3.0, 4.0])


def test_several_envs_are_independent():
    rewards = np.array([[1.0, 10.0, 0.5], [1.0, 20.0, 0.5], [1.0, 30.0, 0.5]])
    dones = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    returns, complete = discounted_returns(rewards, dones, gamma=0.5)
    np.testing.assert_allclose(returns[:, 0], [1.0, 1.5, 1.0])
    np.testing.assert_allclose(returns[:, 1], [20.0, 20.0, 30.0])
    np.testing.assert_allclose(returns[:, 2], [0.875, 0.75, 0.5])
    np.testing.assert_array_equal(complete, [[True, True, False], [True, True, False], [True, False, False]])


def test_truncation_bootstraps_with_value_and_last_values_continue_the_return():
    rewards = np.array([[1.0], [2.0], [3.0], [4.0]])
    dones = np.array([[0], [1], [0], [0]])
    truncation_values = np.array([[0.0], [10.0], [0.0], [0.0]])
    returns, complete = discounted_returns(
        rewards, dones, 0.5, last_values=np.array([8.0]), truncation_values=truncation_values
    )
    # G1 = 2 + 0.5 * V(terminal obs) = 7, G0 = 1 + 3.5; G3 = 4 + 0.5 * 8 = 8, G2 = 3 + 4 = 7
    np.testing.assert_allclose(returns[:, 0], [4.5, 7.0, 7.0, 8.0])
    np.testing.assert_array_equal(complete[:, 0], [True, True, False, False])
    # A rollout whose last step ends its episode ignores last_values.
    returns, _ = discounted_returns(np.array([[1.0]]), np.array([[1]]), 0.5, last_values=np.array([100.0]))
    assert returns[0, 0] == 1.0


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="rewards and dones"):
        discounted_returns(np.zeros((3, 2)), np.zeros((3, 1)), 0.9)
    with pytest.raises(ValueError, match="truncation_values"):
        discounted_returns(np.zeros((3, 2)), np.zeros((3, 2)), 0.9, truncation_values=np.zeros(3))


def _model(incomplete_episodes: str, baseline: str = "mean", n_steps: int = 4, **env_kwargs) -> REINFORCE:
    env = DummyVecEnv([lambda: CountingEnv(length=3, **env_kwargs)])
    return REINFORCE(
        "MlpPolicy", env, n_steps=n_steps, gamma=0.5, baseline=baseline, incomplete_episodes=incomplete_episodes, seed=0
    )


def test_drop_keeps_episodes_that_began_earlier_and_drops_unfinished_steps():
    model = _model("drop")
    collect = start(model)
    batch = collect()
    # Rollout 1: episode 0 steps 0, 1, 2 (ends), episode 1 step 0 (unfinished, dropped).
    np.testing.assert_array_equal(whole(batch).observations, [[0, 0], [1, 0], [2, 0]])
    np.testing.assert_allclose(batch.returns(), [1.75, 1.5, 1.0])
    assert batch.n_fresh == 3 and not batch.carried.any() and len(model._held_over) == 0
    batch = collect()
    # Rollout 2: episode 1 steps 1, 2 end here and have exact returns (kept); episode 2 steps 0, 1 are dropped.
    np.testing.assert_array_equal(whole(batch).observations, [[1, 1], [2, 1]])
    np.testing.assert_allclose(batch.returns(), [1.5, 1.0])


def test_carry_completes_held_steps_in_a_later_rollout():
    model = _model("carry")
    collect = start(model)
    batch = collect()
    np.testing.assert_allclose(batch.returns(), [1.75, 1.5, 1.0])
    np.testing.assert_array_equal(held_observations(model, 0), [[0, 1]])  # episode 1, step 0 is held over
    batch = collect()
    # Fresh: episode 1 steps 1, 2; carried: episode 1 step 0, whose return spans both rollouts.
    np.testing.assert_array_equal(whole(batch).observations, [[1, 1], [2, 1], [0, 1]])
    np.testing.assert_allclose(batch.returns(), [1.5, 1.0, 1.75])
    np.testing.assert_array_equal(batch.carried, [False, False, True])
    np.testing.assert_array_equal(held_observations(model, 0), [[0, 2], [1, 2]])


def test_carry_holds_a_long_episode_over_several_rollouts_and_caps_it():
    env = DummyVecEnv([lambda: CountingEnv(length=5)])
    model = REINFORCE("MlpPolicy", env, n_steps=2, gamma=0.5, baseline="mean", carry_max_steps=100, seed=0)
    collect = start(model)
    assert collect() is None and model._held_over.n_steps(0) == 2  # episode 0 steps 0, 1: nothing complete
    assert collect() is None and model._held_over.n_steps(0) == 4  # steps 2, 3
    batch = collect()  # step 4 ends episode 0, then episode 1 step 0
    np.testing.assert_array_equal(whole(batch).observations[:, 0], [4, 0, 1, 2, 3])
    np.testing.assert_allclose(batch.returns(), [1.0, 1.9375, 1.875, 1.75, 1.5])
    np.testing.assert_array_equal(held_observations(model, 0), [[0, 1]])

    capped = REINFORCE("MlpPolicy", env, n_steps=2, gamma=0.5, baseline="mean", carry_max_steps=3, seed=0)
    collect = start(capped)
    collect(), collect()  # episode 0 steps 0-3: the cap keeps the newest 3
    np.testing.assert_array_equal(held_observations(capped, 0)[:, 0], [1, 2, 3])
    batch = collect()  # step 4 ends the episode: the dropped step 0 has no return, the others their exact ones
    np.testing.assert_array_equal(whole(batch).observations[:, 0], [4, 1, 2, 3])
    np.testing.assert_allclose(batch.returns(), [1.0, 1.875, 1.75, 1.5])


def test_empty_updates_keep_the_held_over_steps():
    """Rollouts in which no episode ends change no weight, and their steps are used once the episode ends."""
    model = _model("carry", n_steps=2)
    model.env = DummyVecEnv([lambda: CountingEnv(length=5)])
    model.learn(4)  # two rollouts, episode 0 steps 0-3: no update
    assert model._n_updates == 0
    model.learn(2, reset_num_timesteps=False)  # step 4 ends episode 0: its 4 held steps are used
    assert model._n_updates == 1 and model.logger.name_to_value["train/carried_steps"] == 4


def test_bootstrap_uses_every_step_and_the_critic_at_the_end():
    model = _model("bootstrap", baseline="value")
    batch = start(model)()
    last_critic = float(model.rollout_buffer.last_critic[0])
    expected = model.policy.predict_values(model.policy.obs_to_tensor(np.array([1.0, 1.0], dtype=np.float32))[0]).item()
    assert last_critic == pytest.approx(expected, rel=1e-5) and last_critic != 0.0
    np.testing.assert_allclose(batch.returns(), [1.75, 1.5, 1.0, 1.0])  # the returns the rewards alone give
    # V = 2 + 3 * critic
    np.testing.assert_allclose(batch.returns((2.0, 3.0)), [1.75, 1.5, 1.0, 1.0 + 0.5 * (2.0 + 3.0 * last_critic)], rtol=1e-6)


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_truncation_without_critic_ends_the_return_and_adds_nothing_to_rewards(baseline):
    model = _model("drop", baseline=baseline, n_steps=6, truncate=True)
    batch = start(model)()
    buffer = model.rollout_buffer
    np.testing.assert_array_equal(buffer.rewards[:, 0], np.ones(6))  # SB3 would add gamma * V(terminal obs) here
    assert not buffer.truncated.any() and not buffer.truncation_critic.any() and batch.discount is None
    np.testing.assert_allclose(batch.returns((2.0, 3.0)), [1.75, 1.5, 1.0, 1.75, 1.5, 1.0])


def test_truncation_with_critic_bootstraps_from_the_terminal_observation():
    model = _model("drop", baseline="value", n_steps=3, truncate=True)
    batch = start(model)()
    buffer = model.rollout_buffer
    np.testing.assert_array_equal(buffer.rewards[:, 0], np.ones(3))
    terminal_obs = np.array([3.0, 0.0], dtype=np.float32)
    critic = model.policy.predict_values(model.policy.obs_to_tensor(terminal_obs)[0]).item()
    np.testing.assert_array_equal(buffer.truncated[:, 0], [False, False, True])
    assert buffer.truncation_critic[2, 0] == pytest.approx(critic, rel=1e-5)
    np.testing.assert_allclose(batch.returns((-5.0, 2.0))[2], 1.0 + 0.5 * (-5.0 + 2.0 * critic), rtol=1e-5)


def test_several_envs_with_make_vec_env():
    env = make_vec_env(lambda: CountingEnv(length=3), n_envs=3)
    model = REINFORCE("MlpPolicy", env, n_steps=4, gamma=0.5, incomplete_episodes="carry", seed=0)
    batch = start(model)()
    assert batch.n_fresh == 9 and all(model._held_over.n_steps(env) == 1 for env in range(3))
    np.testing.assert_allclose(sorted(batch.returns()), sorted([1.75, 1.5, 1.0] * 3))


def test_bootstrap_terms_add_the_critic_to_the_returns_as_the_recursion_with_values_does():
    """G + discount * V equals the reward-to-go whose episodes end with the values (truncations and the rollout's end)."""
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(6, 3))
    dones = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    truncated = dones & np.array([[0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    truncation_critic = rng.normal(size=(6, 3)).astype(np.float32) * truncated
    last_critic = rng.normal(size=3).astype(np.float32)
    mean, std = 2.0, 3.0
    for last in (None, last_critic):
        discount, critic = bootstrap_terms(dones, 0.9, truncated, truncation_critic, last)
        values = mean + std * critic
        expected, _ = discounted_returns(
            rewards,
            dones,
            0.9,
            last_values=None if last is None else mean + std * last,
            truncation_values=np.where(truncated, mean + std * truncation_critic, 0.0),
        )
        returns, _ = discounted_returns(rewards, dones, 0.9)
        np.testing.assert_allclose(returns + discount * values, expected, rtol=1e-6)
    # A terminated episode adds nothing; a step k steps before its truncation adds gamma^(k+1) of the value after it.
    assert discount[1, 0] == 0.0 and discount[2, 1] == pytest.approx(0.9**2)
