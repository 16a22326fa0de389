"""The held-over steps of incomplete_episodes="carry": stored once, capped in steps and bytes, saved with the model."""

import warnings
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_reinforce import REINFORCE, NonFiniteError
from sb3_reinforce.reinforce.held_over import HeldOverSteps, Steps
from tests.callbacks import StopAfter, TrainLog
from tests.envs import CountingEnv
from tests.rollouts import held_observations, start, whole


def _steps(first: int, n: int, width: int = 3) -> Steps:
    """``n`` flat steps whose observations count from ``first`` (float32 rows of ``width``)."""
    observations = np.repeat(np.arange(first, first + n, dtype=np.float32)[:, None], width, axis=1)
    return Steps(observations, np.zeros((n, 1), np.float32), np.ones(n, np.float32), np.zeros(n, np.float32))


def test_a_rollout_appends_its_steps_without_copying_those_already_held():
    model = REINFORCE("MlpPolicy", DummyVecEnv([lambda: CountingEnv(length=100)]), n_steps=8, baseline="none", seed=0)
    collect = start(model)
    collect()
    [first] = model._held_over._blocks[0]
    first_observations = first.observations
    collect()
    collect()
    blocks = model._held_over._blocks[0]
    # The first rollout's block is the same object, its arrays the same memory: nothing held was copied again.
    assert len(blocks) == 3 and blocks[0] is first and blocks[0].observations is first_observations
    np.testing.assert_array_equal(held_observations(model, 0)[:, 0], np.arange(24))
    assert model._held_over.nbytes == sum(block.nbytes for block in blocks)


def test_the_byte_cap_drops_the_oldest_steps_of_any_env_first():
    per_step = _steps(0, 1).nbytes  # 3 float32 observations, an action, a reward and a log-probability: 24 bytes
    store = HeldOverSteps(n_envs=2, max_steps=1000, max_bytes=10 * per_step, observation_dtype=np.dtype(np.float32))
    store.append(0, _steps(0, 4))
    store.append(1, _steps(100, 4))
    store.end_rollout()
    assert store.nbytes == 8 * per_step and len(store) == 8
    store.append(0, _steps(4, 3))  # 11 steps: one over the cap
    store.append(1, _steps(104, 3))  # 14 steps
    store.end_rollout()
    # The oldest blocks are the first rollout's: env 0's goes first, and its 4 steps are enough.
    assert store.nbytes <= 10 * per_step and len(store) == 10
    np.testing.assert_array_equal(np.concatenate([b.observations[:, 0] for b in store._blocks[0]]), [4, 5, 6])
    np.testing.assert_array_equal(
        np.concatenate([b.observations[:, 0] for b in store._blocks[1]]), [100, 101, 102, 103, 104, 105, 106]
    )
    # A partial drop keeps the newest steps of the oldest block, as a copy (not a view keeping the dropped ones).
    store.max_bytes = 8 * per_step
    store.end_rollout()
    np.testing.assert_array_equal(np.concatenate([b.observations[:, 0] for b in store._blocks[1]]), [102, 103, 104, 105, 106])
    kept = store._blocks[1][0].observations
    assert kept.base is None and store.nbytes == 8 * per_step


def test_the_byte_cap_of_a_model_and_what_its_steps_weigh():
    env = DummyVecEnv([lambda: CountingEnv(length=1000)] * 2)
    model = REINFORCE("MlpPolicy", env, n_steps=10, baseline="none", carry_max_bytes=30 * 17, seed=0)
    collect = start(model)
    assert collect() is None
    # 2 float32 observations, a one-byte action (SB3's buffer keeps Discrete's int64), a float32 reward and log-probability.
    assert model._held_over.nbytes == 20 * 17 and model._held_over._blocks[0][0].actions.dtype == np.uint8
    for _ in range(3):
        assert collect() is None
        assert model._held_over.nbytes <= 30 * 17 and len(model._held_over) == 30  # the oldest 10 of 40 dropped
    # Each rollout drops the oldest rollout's block (env 0's first, then env 1's): env 0 keeps its newest rollout only.
    np.testing.assert_array_equal(held_observations(model, 0)[:, 0], np.arange(30, 40))
    np.testing.assert_array_equal(held_observations(model, 1)[:, 0], np.arange(20, 40))
    nothing = REINFORCE("MlpPolicy", env, n_steps=10, baseline="none", carry_max_bytes=0, seed=0)
    collect = start(nothing)
    collect()
    assert len(nothing._held_over) == 0 and nothing._held_over.nbytes == 0


class _Images(gym.Env):
    """84x84 uint8 images, episodes of 30 steps."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 255, (84, 84, 1), np.uint8)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.full((84, 84, 1), self.t, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, self.t >= 30, False, {}


@pytest.mark.slow
def test_images_are_held_as_uint8_and_read_back_exactly():
    model = REINFORCE("CnnPolicy", DummyVecEnv([_Images]), n_steps=20, baseline="none", seed=0)
    collect = start(model)
    collect()
    [block] = model._held_over._blocks[0]
    assert block.observations.dtype == np.uint8 and len(block) == 20
    assert block.nbytes == 20 * (84 * 84 + 1 + 4 + 4)  # a byte a pixel: a quarter of the rollout buffer's float32
    batch = collect()  # the episode ends at step 30: the 20 held steps join the batch, read as float32
    observations = whole(batch).observations
    assert observations.dtype == np.float32
    np.testing.assert_array_equal(observations[batch.n_fresh :, 0, 0, 0], np.arange(20))


def _parameters(model: REINFORCE) -> dict[str, th.Tensor]:
    return {name: tensor.clone() for name, tensor in model.policy.state_dict().items()}


@pytest.mark.parametrize("incomplete_episodes", ["carry", "drop", "bootstrap"])
def test_save_load_learn_continues_exactly_as_an_uninterrupted_run(tmp_path, incomplete_episodes):
    """learn(N); save; load (same env object, RNG as it was); learn(N) gives learn(2N)'s weights and moments."""
    kwargs = dict(n_steps=64, baseline="value", incomplete_episodes=incomplete_episodes, seed=0)
    uninterrupted = REINFORCE("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), **kwargs)
    uninterrupted.learn(640)
    uninterrupted.learn(640, reset_num_timesteps=False)

    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    first = REINFORCE("MlpPolicy", env, **kwargs)
    first.learn(640)  # Pendulum's 200-step episodes: steps of running episodes are held over at the save
    assert (len(first._held_over) > 0) == (incomplete_episodes == "carry")
    first.save(tmp_path / "model.zip")
    rng = th.get_rng_state()
    resumed = REINFORCE.load(tmp_path / "model.zip", env=env, force_reset=False)
    th.set_rng_state(rng)  # building the loaded policy drew from the RNG
    assert len(resumed._held_over) == len(first._held_over)
    resumed.learn(640, reset_num_timesteps=False)

    assert resumed._n_updates == uninterrupted._n_updates
    assert resumed._return_moments == uninterrupted._return_moments
    for name, tensor in _parameters(uninterrupted).items():
        assert th.equal(_parameters(resumed)[name], tensor), name


def test_a_save_without_held_over_steps_loads_with_none_held(tmp_path):
    """A file saved before the held-over steps were part of the save (no _held_over.pth) loads, holding none."""
    model = REINFORCE("MlpPolicy", DummyVecEnv([lambda: CountingEnv(length=100)]), n_steps=8, baseline="none", seed=0)
    model.learn(16)
    assert len(model._held_over) == 16
    model.save(tmp_path / "new.zip")
    with zipfile.ZipFile(tmp_path / "new.zip") as new, zipfile.ZipFile(tmp_path / "old.zip", "w") as old:
        assert "_held_over.pth" in new.namelist()
        for name in new.namelist():
            if name != "_held_over.pth":
                old.writestr(name, new.read(name))
    loaded = REINFORCE.load(tmp_path / "old.zip", env=model.env, force_reset=False)
    assert len(loaded._held_over) == 0
    loaded.learn(16, reset_num_timesteps=False)
    # Loaded with another number of envs: the held steps belong to other episodes and are not restored.
    other = REINFORCE.load(tmp_path / "new.zip", env=DummyVecEnv([lambda: CountingEnv(length=100)] * 2))
    assert len(other._held_over) == 0


def test_learn_warns_once_when_no_episode_ends_and_names_the_fixes():
    never_ends = DummyVecEnv([lambda: CountingEnv(length=10**9)])  # no TimeLimit either
    model = REINFORCE("MlpPolicy", never_ends, n_steps=64, baseline="none", seed=0)
    with pytest.warns(UserWarning, match="without an update: no episode has ended") as caught:
        model.learn(64 * 6)
    assert model._n_updates == 0
    [warning] = [w for w in caught if "no episode has ended" in str(w.message)]
    for fix in ("TimeLimit", "incomplete_episodes='bootstrap'", "n_steps"):
        assert fix in str(warning.message)

    learning = REINFORCE("MlpPolicy", DummyVecEnv([lambda: CountingEnv(length=150)]), n_steps=64, baseline="none", seed=0)
    bootstrapping = REINFORCE("MlpPolicy", never_ends, n_steps=64, incomplete_episodes="bootstrap", seed=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*no episode has ended")
        learning.learn(64 * 6)  # two empty rollouts, then an update: the episodes do end
        bootstrapping.learn(64 * 6)
    assert learning._n_updates > 0 and bootstrapping._n_updates == 6


def test_observations_a_wrapper_changed_are_held_as_float32_not_rounded():
    """VecNormalize keeps a uint8 space and returns floats: the store keeps them as they are."""
    store = HeldOverSteps(n_envs=1, max_steps=10, max_bytes=10**6, observation_dtype=np.dtype(np.uint8))
    images = _steps(3, 2)
    store.append(0, images)
    normalised = _steps(0, 2)
    normalised.observations += 0.25
    store.append(0, normalised)
    first, second = store.pop(0)
    assert first.observations.dtype == np.uint8 and second.observations.dtype == np.float32
    np.testing.assert_array_equal(second.observations, normalised.observations)


def _counting_model(length: int, env_cls: type = CountingEnv, **env_kwargs) -> REINFORCE:
    env = DummyVecEnv([lambda: env_cls(length=length, **env_kwargs)])
    return REINFORCE("MlpPolicy", env, n_steps=4, gamma=1.0, baseline="none", incomplete_episodes="carry", seed=0)


@pytest.mark.parametrize(
    ("length", "carried", "return_mean"),
    [
        # Episode 0 (10 steps): 4 steps held, 3 abandoned, then steps 7-9 end it. The held steps' true returns are
        # 10, 9, 8, 7, but the env went on without them: they are dropped, and only steps 7-9 (returns 3, 2, 1) count.
        # Kept, the held steps would be used with returns 7, 6, 5, 4 (4 carried steps, return mean 4): not theirs.
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
    # Kept, the held steps 0-3 would get returns 6, 5, 4, 3 (their true returns are 10, 9, 8, 7).
    assert log.updates[0]["train/carried_steps"] == 0
    assert log.updates[0]["train/return_mean"] == pytest.approx(1.5)  # steps 8, 9: returns 2, 1


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
