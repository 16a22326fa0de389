"""REINFORCE behaves like any SB3 algorithm: spaces, policies, VecEnvs, callbacks, logging, save/load, seeding."""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_reinforce import REINFORCE, __version__
from sb3_reinforce.reinforce import CnnPolicy, MlpPolicy, MultiInputPolicy
from tests.envs import ContinuousTargetEnv

ACTION_SPACE_ENVS = {
    "Discrete": lambda: IdentityEnv(4),
    "Box": lambda: IdentityEnvBox(ep_length=10),
    "MultiDiscrete": lambda: IdentityEnvMultiDiscrete(2),
    "MultiBinary": lambda: IdentityEnvMultiBinary(3),
}


def test_package_exports():
    assert isinstance(__version__, str)
    assert REINFORCE.policy_aliases == {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy, "MultiInputPolicy": MultiInputPolicy}


@pytest.mark.parametrize("space", sorted(ACTION_SPACE_ENVS))
@pytest.mark.parametrize(
    ("baseline", "incomplete_episodes"), [("none", "carry"), ("mean", "drop"), ("value", "bootstrap"), ("value", "carry")]
)
def test_every_action_space(space, baseline, incomplete_episodes):
    env = make_vec_env(ACTION_SPACE_ENVS[space], n_envs=2, seed=0)
    model = REINFORCE("MlpPolicy", env, n_steps=16, baseline=baseline, incomplete_episodes=incomplete_episodes, seed=0)
    model.learn(128)
    actions, _ = model.predict(env.reset(), deterministic=True)
    assert actions.shape == (2, *env.action_space.shape)
    assert all(env.action_space.contains(a) for a in actions)


def test_dict_observations():
    env = make_vec_env(SimpleMultiObsEnv, n_envs=2, seed=0)
    model = REINFORCE("MultiInputPolicy", env, n_steps=32, incomplete_episodes="carry", seed=0)
    model.learn(256)
    model.predict(env.reset())


def test_image_observations_with_cnn_policy():
    env = make_vec_env(lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1), n_envs=1, seed=0)
    model = REINFORCE(
        "CnnPolicy", env, n_steps=16, seed=0, policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32))
    )
    model.learn(32)
    model.predict(env.reset())


def test_unsupported_spaces_are_rejected_with_the_supported_list():
    class TupleActions(IdentityEnv):
        def __init__(self):
            super().__init__(2)
            self.action_space = spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])

    with pytest.raises(TypeError, match="supported: Discrete, Box, MultiDiscrete, MultiBinary"):
        REINFORCE("MlpPolicy", DummyVecEnv([TupleActions]))


def _predictions(model, obs):
    return model.predict(obs, deterministic=True)[0]


def test_save_load_round_trip(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = REINFORCE("MlpPolicy", env, n_steps=64, baseline="mean", seed=0)
    model.learn(512)
    obs = env.reset()
    path = tmp_path / "reinforce_cartpole"
    model.save(path)
    loaded = REINFORCE.load(path, env=env)
    np.testing.assert_array_equal(_predictions(model, obs), _predictions(loaded, obs))
    assert loaded.baseline == "mean" and loaded.n_steps == 64 and loaded._return_moments == model._return_moments
    # Parameters round trip too, and training goes on from where it stopped.
    params = model.get_parameters()
    loaded.set_parameters(params)
    loaded.learn(256, reset_num_timesteps=False)
    assert loaded.num_timesteps == 768


def test_same_seed_gives_identical_parameters():
    def train(seed):
        env = make_vec_env("CartPole-v1", n_envs=2, seed=seed)
        model = REINFORCE("MlpPolicy", env, n_steps=64, baseline="value", seed=seed)
        model.learn(1_024)
        return [p.detach().clone() for p in model.policy.parameters()]

    first, second, other = train(3), train(3), train(4)
    assert all(th.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(th.equal(a, b) for a, b in zip(first, other, strict=True))


def test_vec_normalize_callbacks_tensorboard_and_progress_bar(tmp_path):
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=4, seed=0))
    eval_env = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=1), training=False, norm_reward=False)
    eval_callback = EvalCallback(eval_env, eval_freq=64, n_eval_episodes=2, log_path=str(tmp_path / "eval"), verbose=0)
    checkpoint = CheckpointCallback(save_freq=128, save_path=str(tmp_path / "ckpt"), name_prefix="reinforce")
    model = REINFORCE("MlpPolicy", env, n_steps=32, tensorboard_log=str(tmp_path / "tb"), seed=0)
    model.learn(1_024, callback=[eval_callback, checkpoint], progress_bar=True)
    assert eval_callback.evaluations_timesteps, "EvalCallback never ran"
    assert len(os.listdir(tmp_path / "ckpt")) >= 2
    event_files = [f for _, _, files in os.walk(tmp_path / "tb") for f in files if f.startswith("events.out")]
    assert event_files
    mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=2)
    assert mean_reward > 0


def test_logs_the_a2c_keys_that_apply(tmp_path):
    from stable_baselines3.common.logger import configure

    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=256, baseline="value", seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(512)
    keys = set(model.logger.name_to_value)
    for key in (
        "train/policy_loss",
        "train/value_loss",
        "train/entropy_loss",
        "train/explained_variance",
        "train/learning_rate",
        "train/n_updates",
        "train/grad_norm",
        "train/used_fraction",
    ):
        assert key in keys, key


def test_cartpole_learns_in_seconds():
    env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    model = REINFORCE("MlpPolicy", env, n_steps=128, baseline="mean", learning_rate=3e-3, seed=0)
    # Stochastic evaluation: an untrained near-uniform policy's argmax can balance the pole by chance.
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=5)
    before, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=False)
    model.learn(20_000)
    after, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=False)
    assert before < 60 and after > 150, (before, after)


def test_continuous_task_learns():
    env = make_vec_env(ContinuousTargetEnv, n_envs=4, seed=0)
    model = REINFORCE("MlpPolicy", env, n_steps=64, baseline="value", learning_rate=3e-3, seed=0)
    eval_env = make_vec_env(ContinuousTargetEnv, n_envs=1, seed=7)
    before, _ = evaluate_policy(model, eval_env, n_eval_episodes=200)
    model.learn(15_000)
    after, _ = evaluate_policy(model, eval_env, n_eval_episodes=200)
    assert before < -0.2 and after > -0.05, (before, after)


def test_env_string_and_set_env():
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=32, seed=0)
    model.learn(64)
    model.set_env(make_vec_env("CartPole-v1", n_envs=1, seed=2))
    model.learn(64, reset_num_timesteps=False)
    assert model.num_timesteps == 128


def test_load_works_without_env_and_rejects_another_algorithm(tmp_path):
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=32, seed=0)
    model.save(tmp_path / "r")
    loaded = REINFORCE.load(tmp_path / "r")
    assert loaded.env is None
    loaded.predict(gym.make("CartPole-v1").reset(seed=0)[0])
    A2C("MlpPolicy", "CartPole-v1").save(tmp_path / "a2c")
    with pytest.raises(ValueError, match=r"is not a REINFORCE save.*saved by another algorithm"):
        REINFORCE.load(tmp_path / "a2c")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(gamma=1.5), "gamma must be a number in \\[0, 1\\]"),
        (dict(gamma=-0.1), "gamma must be"),
        (dict(n_steps=0), "n_steps must be an integer >= 1"),
        (dict(n_steps=2.5), "n_steps must be an integer"),
        (dict(baseline="critic"), "baseline must be one of 'none', 'mean', 'value'"),
        (dict(incomplete_episodes="keep"), "incomplete_episodes must be one of 'carry', 'drop', 'bootstrap'"),
        (dict(incomplete_episodes="bootstrap", baseline="mean"), "incomplete_episodes='bootstrap' needs a critic"),
        (dict(learning_rate=-1.0), "learning_rate must be"),
        (dict(ent_coef=-0.1), "ent_coef must be"),
        (dict(vf_coef=float("nan")), "vf_coef must be"),
        (dict(max_grad_norm=0.0), "max_grad_norm must be"),
        (dict(carry_ratio_clip=0.0), "carry_ratio_clip must be"),
        (dict(carry_max_steps=0), "carry_max_steps must be"),
    ],
)
def test_invalid_hyperparameters_name_the_argument_and_accepted_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        REINFORCE("MlpPolicy", "CartPole-v1", **kwargs)
