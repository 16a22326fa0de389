"""Negative and huge rewards, sampled actions and their log-probabilities, gradient clipping, non-finite guards."""

import contextlib
import re
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_reinforce import REINFORCE, NonFiniteError
from tests.envs import BadValueEnv, CountingEnv, MatchTargetEnv
from tests.rollouts import start, whole


class FiniteLogsCallback(BaseCallback):
    """Asserts that every value the previous update logged is finite (train/* records survive until the next dump)."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0

    def _on_rollout_start(self) -> None:
        for key, value in self.logger.name_to_value.items():
            assert np.isfinite(value), f"{key} = {value}"
            self.checked += 1

    def _on_step(self) -> bool:
        return True


@contextlib.contextmanager
def torch_validation(enabled: bool) -> Iterator[None]:
    """torch's distribution argument validation on or off for the block (it is a process-wide default)."""
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(enabled)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def _accuracy(model: REINFORCE, horizon: int) -> float:
    env = MatchTargetEnv(horizon=horizon)
    obs, _ = env.reset(seed=123)
    correct = []
    for _ in range(400):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, terminated, _, info = env.step(int(action))
        correct.append(info["correct"])
        if terminated:
            obs, _ = env.reset()
    return float(np.mean(correct))


@pytest.mark.parametrize("normalize_advantage", [True, False])
@pytest.mark.parametrize("baseline", ["mean", "value"])
@pytest.mark.parametrize(("shift", "scale"), [(-100.0, 1.0), (-1e6, 1.0), (-1e6, 1e6), (-1e6, 2e6)])
def test_all_negative_and_huge_rewards_still_learn_and_stay_finite(baseline, shift, scale, normalize_advantage):
    """
    Every reward negative (shifted by -100 or -1e6, or in [-1e6, 0]), or rewards of +-1e6: no over-confidence, no NaN
    or infinity in any logged value.
    """
    env = make_vec_env(MatchTargetEnv, n_envs=4, seed=0, env_kwargs=dict(horizon=1, shift=shift, scale=scale))
    model = REINFORCE(
        "MlpPolicy", env, n_steps=64, baseline=baseline, normalize_advantage=normalize_advantage, learning_rate=3e-3, seed=0
    )
    callback = FiniteLogsCallback()
    model.learn(6_000, callback=callback)
    assert callback.checked > 0
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    assert _accuracy(model, horizon=1) > 0.95


@pytest.mark.parametrize(("baseline", "shift", "scale"), [("value", -100.0, 1.0), ("value", -1e6, 1e6), ("mean", -1e6, 1e6)])
def test_fixed_horizon_negative_rewards_learn(baseline, shift, scale):
    """
    Horizon 4, every reward negative. A constant shift makes the returns depend on the time left, which only a
    state-dependent baseline removes (the observation holds the time left); scaled rewards in [-1e6, 0] need none.
    """
    env = make_vec_env(MatchTargetEnv, n_envs=4, seed=0, env_kwargs=dict(horizon=4, shift=shift, scale=scale))
    model = REINFORCE("MlpPolicy", env, n_steps=64, baseline=baseline, learning_rate=3e-3, seed=0)
    callback = FiniteLogsCallback()
    model.learn(12_000, callback=callback)
    assert _accuracy(model, horizon=4) > 0.9


def test_losses_use_exactly_the_sampled_actions_with_finite_log_probabilities():
    received = []

    class Recorder(CountingEnv):
        def step(self, action):
            received.append(int(action))
            return super().step(action)

    model = REINFORCE("MlpPolicy", DummyVecEnv([Recorder]), n_steps=32, incomplete_episodes="drop", seed=0)
    # A near-deterministic policy: action 1 has probability ~e^-40. Sampling from the model's own distribution means
    # it is (almost) never sampled, and whatever is sampled has a finite log-probability.
    with th.no_grad():
        model.policy.action_net.bias.copy_(th.tensor([20.0, -20.0]))
    steps = whole(start(model)())
    np.testing.assert_array_equal(model.rollout_buffer.actions[:, 0, 0], received)
    obs = th.as_tensor(steps.observations)
    actions = th.as_tensor(steps.actions).long().flatten()
    np.testing.assert_array_equal(actions.numpy(), received[: len(actions)])
    log_prob = model.policy.get_distribution(obs).log_prob(actions).detach()
    assert th.isfinite(log_prob).all() and np.isfinite(steps.log_probs).all()
    np.testing.assert_allclose(log_prob.numpy(), steps.log_probs, rtol=1e-5, atol=1e-6)


def _capture_step_grad_norms(model: REINFORCE) -> list[float]:
    norms: list[float] = []
    step = model.policy.optimizer.step

    def recording_step(*args, **kwargs):
        grads = [p.grad for p in model.policy.parameters() if p.grad is not None]
        norms.append(float(th.linalg.vector_norm(th.stack([th.linalg.vector_norm(g) for g in grads]))))
        return step(*args, **kwargs)

    model.policy.optimizer.step = recording_step
    return norms


@pytest.mark.parametrize("max_grad_norm", [0.5, None])
def test_gradients_are_clipped_to_max_grad_norm(max_grad_norm):
    env = make_vec_env(MatchTargetEnv, n_envs=2, seed=0, env_kwargs=dict(horizon=2, shift=-1e3))
    model = REINFORCE(
        "MlpPolicy", env, n_steps=32, baseline="none", normalize_advantage=False, max_grad_norm=max_grad_norm, seed=0
    )
    norms = _capture_step_grad_norms(model)
    model.learn(256)
    logged = model.logger.name_to_value["train/grad_norm"]
    assert logged > 1.0  # returns around -2000 make a large raw gradient
    if max_grad_norm is None:
        assert norms[-1] == pytest.approx(logged, rel=1e-4)
    else:
        assert max(norms) <= max_grad_norm * (1 + 1e-4)


def _state(model: REINFORCE) -> tuple[list[th.Tensor], dict]:
    params = [p.detach().clone() for p in model.policy.parameters()]
    optimizer_state = {
        k: {n: (v.clone() if isinstance(v, th.Tensor) else v) for n, v in s.items()}
        for k, s in model.policy.optimizer.state_dict()["state"].items()
    }
    return params, optimizer_state


def _assert_same_state(model: REINFORCE, state: tuple[list[th.Tensor], dict]) -> None:
    params, optimizer_state = state
    for before, after in zip(params, model.policy.parameters(), strict=True):
        assert th.equal(before, after.detach())
    current = model.policy.optimizer.state_dict()["state"]
    assert current.keys() == optimizer_state.keys()
    for key, values in optimizer_state.items():
        for name, value in values.items():
            assert th.equal(th.as_tensor(value), th.as_tensor(current[key][name]))


@pytest.mark.parametrize(("where", "bad"), [("reward", np.nan), ("reward", np.inf), ("observation", -np.inf)])
def test_non_finite_env_values_raise_before_any_weight_changes(where, bad):
    model = REINFORCE("MlpPolicy", DummyVecEnv([lambda: BadValueEnv(at=40, where=where, bad=bad)]), n_steps=16, seed=0)
    model.learn(32)  # two clean updates
    state = _state(model)
    with pytest.raises(NonFiniteError, match=f"Non-finite {where} from env index 0 at step 8"):
        model.learn(32, reset_num_timesteps=False)
    _assert_same_state(model, state)


def test_non_finite_loss_raises_and_leaves_model_and_optimizer_unchanged():
    env = DummyVecEnv([lambda: CountingEnv(length=3)])
    model = REINFORCE("MlpPolicy", env, n_steps=12, baseline="none", normalize_advantage=False, seed=0)
    model.learn(24)
    state, moments = _state(model), model._return_moments
    # Finite rewards whose returns overflow float32: the loss is not finite.
    env.envs[0].reward = 3e38
    with pytest.raises(NonFiniteError, match="no weight was changed"):
        model.learn(12, reset_num_timesteps=False)
    _assert_same_state(model, state)
    assert model._return_moments == moments


def test_the_finite_check_names_the_env_index_the_step_and_ignores_integer_observations():
    from sb3_reinforce.reinforce.checks import check_finite as _check_finite

    rewards = np.zeros(3, dtype=np.float32)
    _check_finite("reward", rewards, 1)
    _check_finite("observation", {"image": np.full((3, 2, 2), 255, dtype=np.uint8), "x": np.ones((3, 2))}, 1)
    _check_finite("reward", np.full(3, 3e38, dtype=np.float32), 1)  # huge but finite
    rewards[2] = -np.inf
    with pytest.raises(NonFiniteError, match="Non-finite reward from env index 2 at step 5"):
        _check_finite("reward", rewards, 5)
    obs = {"image": np.zeros((3, 2, 2), dtype=np.uint8), "x": np.ones((3, 2), dtype=np.float32)}
    obs["x"][1, 1] = np.nan
    with pytest.raises(NonFiniteError, match="Non-finite observation from env index 1 at step 7"):
        _check_finite("observation", obs, 7)


@pytest.mark.parametrize("validate_args", [True, False])
@pytest.mark.parametrize(("where", "bad"), [("observation", np.nan), ("reward", -np.inf)])
def test_non_finite_values_name_the_env_index_among_several_envs(where, bad, validate_args):
    """
    Discrete actions: a NaN observation stops collection at once, when torch refuses the policy's distribution (its
    argument validation, or, without it, sampling from NaN probabilities); a NaN reward is found at the end of the
    rollout. Either way the error names the env and the step, and nothing was learnt.
    """
    env = DummyVecEnv([lambda: CountingEnv(length=3)] * 2 + [lambda: BadValueEnv(at=20, where=where, bad=bad)])
    model = REINFORCE("MlpPolicy", env, n_steps=8, seed=0)
    model.learn(48)  # two clean updates: 16 steps per env
    state = _state(model)
    message = f"Non-finite {where} from env index 2 at step 4 of the rollout"
    with torch_validation(validate_args), pytest.raises(NonFiniteError, match=message):
        model.learn(24, reset_num_timesteps=False)
    _assert_same_state(model, state)


def test_non_finite_terminal_observation_of_a_truncated_episode_is_named():
    class BadTerminal(CountingEnv):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            if truncated and self.episode == 2:
                obs[0] = np.nan
            return obs, reward, terminated, truncated, info

    env = DummyVecEnv([lambda: CountingEnv(length=3, truncate=True), lambda: BadTerminal(length=3, truncate=True)])
    model = REINFORCE("MlpPolicy", env, n_steps=16, baseline="value", seed=0)
    with pytest.raises(NonFiniteError, match="Non-finite terminal observation from env index 1 at step 9"):
        model.learn(32)


class NaNObservationAt(gym.Env):
    """Continuous actions; the observation returned by the ``at``-th call of ``step`` is NaN. Episodes of 5 steps."""

    def __init__(self, at: int):
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.at, self.calls, self.t = at, 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.calls += 1
        self.t += 1
        obs = np.full(2, np.nan if self.calls == self.at else 0.5, dtype=np.float32)
        return obs, 1.0, self.t >= 5, False, {}


@pytest.mark.parametrize("validate_args", [True, False])
@pytest.mark.parametrize(
    ("at", "step", "kwargs"), [(19, 3, {}), (24, 8, dict(baseline="value", incomplete_episodes="bootstrap"))]
)
def test_a_nan_observation_is_named_even_when_torch_does_not_refuse_it(at, step, kwargs, validate_args):
    """
    Without torch's validation, a NaN observation gives NaN actions but no error: the end-of-rollout check names it
    (in the middle of the rollout, and as the last observation, which "bootstrap" would feed to the critic).
    """
    model = REINFORCE("MlpPolicy", DummyVecEnv([lambda: NaNObservationAt(at)]), n_steps=8, seed=0, **kwargs)
    model.learn(16)
    state = _state(model)
    message = f"Non-finite observation from env index 0 at step {step} of the rollout"
    with torch_validation(validate_args), pytest.raises(NonFiniteError, match=message):
        model.learn(8, reset_num_timesteps=False)
    _assert_same_state(model, state)


@pytest.mark.parametrize("baseline", ["none", "mean", "value"])
def test_returns_beyond_float32_squares_train_and_only_float32_overflow_stops(baseline):
    """Rewards of 1e25 (returns near 1e26): their variance and the gradient's norm overflow float32 and are taken in
    float64; returns beyond float32's largest value (3.4e38) make the loss overflow, and the error says so."""
    env = DummyVecEnv([lambda: CountingEnv(length=20, reward=1e25)] * 2)
    model = REINFORCE("MlpPolicy", env, n_steps=32, baseline=baseline, seed=0)
    model.learn(320)
    assert model._n_updates == 5 and all(th.isfinite(p).all() for p in model.policy.parameters())
    assert model._return_moments is not None and np.isfinite(model._return_moments).all()
    env = DummyVecEnv([lambda: CountingEnv(length=20, reward=1e38)] * 2)
    model = REINFORCE("MlpPolicy", env, n_steps=32, baseline=baseline, seed=0)
    with pytest.raises(
        NonFiniteError, match=r"no weight was changed.*observations and rewards are finite.*too large for float32"
    ):
        model.learn(64)


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("Pendulum-v1", {"learning_rate": 1e3}),
        ("CartPole-v1", {"learning_rate": 1e6, "policy_kwargs": {"activation_fn": th.nn.ReLU}}),
    ],
)
def test_a_diverging_learning_rate_is_named_not_the_inputs(env_id, kwargs):
    """The weights blow up (a Gaussian's scale underflows to 0, or the loss overflows): the error names the rate."""
    model = REINFORCE("MlpPolicy", env_id, n_steps=64, seed=0, **kwargs)
    rate = f"learning_rate={kwargs['learning_rate']:g} now"
    with pytest.raises(NonFiniteError, match=f"observations and rewards are finite.*{re.escape(rate)}"):
        model.learn(6_000)
