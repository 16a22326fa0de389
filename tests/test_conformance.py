"""
REINFORCE behaves like any SB3 algorithm: the checks SB3 runs its own algorithms through (run on each space, predict
shapes, save/load with each policy, env switching after load, callbacks, train/eval mode, spaces), VecNormalize,
TensorBoard, logging, learning, written against SB3's public API; plus determinism, resume, and clear errors for bad
input (hyper-parameters, spaces, policy_kwargs, save files). One suite, one table of envs (``SPACE_ENVS``).
"""

import csv
import inspect
import io
import os
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
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
from stable_baselines3.common.logger import configure
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize

from sb3_reinforce import REINFORCE, __version__
from sb3_reinforce.reinforce import MlpPolicy
from tests.envs import ContinuousTargetEnv

SPACE_ENVS = {
    "Discrete": lambda: IdentityEnv(4),
    "Box": lambda: IdentityEnvBox(ep_length=10),
    "MultiDiscrete": lambda: IdentityEnvMultiDiscrete(2),
    "MultiBinary": lambda: IdentityEnvMultiBinary(3),
    "Dict": lambda: SimpleMultiObsEnv(random_start=False),
    "Image": lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=True),
}
SHORT_EPISODES = {  # 10-step episodes: every rollout of 16 steps holds an episode end
    "Discrete": lambda: IdentityEnv(4, ep_length=10),
    "Box": lambda: IdentityEnvBox(ep_length=10),
    "MultiDiscrete": lambda: IdentityEnvMultiDiscrete(2, ep_length=10),
    "MultiBinary": lambda: IdentityEnvMultiBinary(3, ep_length=10),
}
POLICY = {"Dict": "MultiInputPolicy", "Image": "CnnPolicy"}
SMALL_CNN = dict(features_extractor_kwargs=dict(features_dim=16))


def _model(space: str, n_envs: int = 2, **kwargs) -> REINFORCE:
    env = make_vec_env(SPACE_ENVS[space], n_envs=n_envs, seed=0)
    policy_kwargs = SMALL_CNN if space == "Image" else None
    return REINFORCE(POLICY.get(space, "MlpPolicy"), env, n_steps=8, policy_kwargs=policy_kwargs, seed=0, **kwargs)


def _single_obs(env: gym.Env):
    return env.observation_space.sample()


def _batch(space: gym.Space, n: int):
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        return {key: np.stack([s[key] for s in samples]) for key in space.spaces}
    return np.stack(samples)


@pytest.mark.parametrize("space", sorted(SPACE_ENVS))
def test_predict_shapes_with_and_without_vectorised_observations(space):
    model = _model(space)
    model.learn(16)
    action_space, observation_space = model.action_space, model.observation_space
    # One unvectorised observation: one action, no batch axis.
    action, state = model.predict(_single_obs(SPACE_ENVS[space]()), deterministic=True)
    assert state is None
    assert action.shape == action_space.shape and action_space.contains(action)
    # A batch: a batch of actions, each in the space; deterministic predictions repeat exactly.
    batch = _batch(observation_space, 5)
    actions, _ = model.predict(batch, deterministic=True)
    assert actions.shape == (5, *action_space.shape)
    assert all(action_space.contains(a) for a in actions)
    np.testing.assert_array_equal(actions, model.predict(batch, deterministic=True)[0])
    # The VecEnv's own observations.
    obs = model.get_env().reset()
    assert model.predict(obs)[0].shape == (2, *action_space.shape)


@pytest.mark.parametrize("space", sorted(SPACE_ENVS))
def test_save_load_with_each_policy_and_switching_envs(space, tmp_path):
    model = _model(space)
    model.learn(32)
    batch = _batch(model.observation_space, 6)
    expected = model.predict(batch, deterministic=True)[0]
    model.save(tmp_path / "model")
    # Loaded with a VecEnv of another size: same predictions, and training goes on with the new env.
    new_env = make_vec_env(SPACE_ENVS[space], n_envs=3, seed=1)
    loaded = REINFORCE.load(tmp_path / "model", env=new_env)
    np.testing.assert_array_equal(loaded.predict(batch, deterministic=True)[0], expected)
    for (name, saved), (_, restored) in zip(
        model.policy.state_dict().items(), loaded.policy.state_dict().items(), strict=True
    ):
        assert th.equal(saved, restored), name
    loaded.learn(48, reset_num_timesteps=False)
    assert loaded.n_envs == 3 and loaded.num_timesteps == 32 + 48
    # The policy alone round-trips too (policy.save / Policy.load).
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth")
    np.testing.assert_array_equal(policy.predict(batch, deterministic=True)[0], expected)


def test_set_env_with_other_spaces_is_refused():
    model = _model("Discrete")
    with pytest.raises(ValueError, match="Observation spaces do not match"):
        model.set_env(make_vec_env(lambda: IdentityEnv(5), n_envs=2))


@pytest.mark.parametrize("space", ["Box", "Discrete"])
def test_float64_spaces(space):
    class Float64Env(gym.Env):
        def __init__(self):
            self.observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float64)
            if space == "Box":
                self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64)
            else:
                self.action_space = spaces.Discrete(3)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 1.0, bool(self.np_random.random() < 0.2), False, {}

    model = REINFORCE("MlpPolicy", Float64Env(), n_steps=16, seed=0)
    model.learn(64)
    action, _ = model.predict(Float64Env().observation_space.sample())
    assert model.action_space.contains(action.astype(model.action_space.dtype))


class EventCounter(BaseCallback):
    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.events = {"training_start": 0, "rollout_start": 0, "step": 0, "rollout_end": 0, "training_end": 0}
        self.stop_at = stop_at
        self.training_modes: list[bool] = []

    def _on_training_start(self) -> None:
        self.events["training_start"] += 1

    def _on_rollout_start(self) -> None:
        self.events["rollout_start"] += 1

    def _on_step(self) -> bool:
        self.events["step"] += 1
        self.training_modes.append(self.model.policy.training)
        return self.stop_at is None or self.events["step"] < self.stop_at

    def _on_rollout_end(self) -> None:
        self.events["rollout_end"] += 1

    def _on_training_end(self) -> None:
        self.events["training_end"] += 1


def test_callback_events_and_early_stop():
    model = _model("Discrete", n_envs=2)
    counter = EventCounter()
    model.learn(64, callback=counter)
    assert counter.events == {"training_start": 1, "rollout_start": 4, "step": 32, "rollout_end": 4, "training_end": 1}
    # Collection runs the policy in eval mode (as SB3 does); train() switches to training mode.
    assert not any(counter.training_modes)
    stopper = EventCounter(stop_at=5)
    model.learn(64, callback=stopper)
    assert stopper.events["step"] == 5 and model.num_timesteps == 10 and stopper.events["training_end"] == 1


def test_vec_normalize_statistics_are_used_and_saved(tmp_path):
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0), gamma=0.99)
    model = REINFORCE("MlpPolicy", env, n_steps=32, seed=0)
    model.learn(256)
    assert env.obs_rms.count > 256
    env.save(tmp_path / "vecnormalize.pkl")
    model.save(tmp_path / "model")
    eval_env = VecNormalize.load(tmp_path / "vecnormalize.pkl", make_vec_env("CartPole-v1", n_envs=1, seed=1))
    eval_env.training, eval_env.norm_reward = False, False
    loaded = REINFORCE.load(tmp_path / "model", env=eval_env)
    obs = eval_env.reset()
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


# --- The SB3 API: exports, every action space, callbacks, logging, learning ----------------------------------------


def test_the_version_is_the_installed_metadata_s():
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert f'\nversion = "{__version__}"\n' in pyproject  # read from the installed metadata, written once


@pytest.mark.parametrize("space", ["Box", "Discrete", "MultiBinary", "MultiDiscrete"])
@pytest.mark.parametrize(
    ("baseline", "incomplete_episodes"), [("none", "carry"), ("mean", "drop"), ("value", "bootstrap"), ("value", "carry")]
)
def test_every_action_space_trains_with_every_baseline_and_mode(space, baseline, incomplete_episodes):
    """Updates happen and change the actor's weights (predict's shapes: test_predict_shapes_...)."""
    env = make_vec_env(SHORT_EPISODES[space], n_envs=2, seed=0)
    model = REINFORCE("MlpPolicy", env, n_steps=16, baseline=baseline, incomplete_episodes=incomplete_episodes, seed=0)
    before = [parameter.detach().clone() for parameter in model.policy.action_net.parameters()]
    model.learn(128)
    assert model.logger.name_to_value["train/n_updates"] == model._n_updates > 0
    assert all(not th.equal(old, new) for old, new in zip(before, model.policy.action_net.parameters(), strict=True))


def test_callbacks_tensorboard_and_progress_bar(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=4, seed=0)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=1)
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


def test_load_works_without_env(tmp_path):
    model = REINFORCE("MlpPolicy", "CartPole-v1", n_steps=32, seed=0)
    model.save(tmp_path / "r")
    loaded = REINFORCE.load(tmp_path / "r")
    assert loaded.env is None
    loaded.predict(gym.make("CartPole-v1").reset(seed=0)[0])


# --- Determinism and resume -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "incomplete_episodes"), [("none", "carry"), ("mean", "drop"), ("value", "carry"), ("value", "bootstrap")]
)
def test_same_seed_gives_bit_identical_parameters(baseline, incomplete_episodes):
    def train(seed: int) -> list[th.Tensor]:
        env = make_vec_env("CartPole-v1", n_envs=3, seed=seed)
        model = REINFORCE("MlpPolicy", env, n_steps=48, baseline=baseline, incomplete_episodes=incomplete_episodes, seed=seed)
        model.learn(1_440)
        return [p.detach().clone() for p in model.policy.parameters()]

    first, second, other = train(7), train(7), train(8)
    assert all(th.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(th.equal(a, b) for a, b in zip(first, other, strict=True))


def test_learn_save_load_learn_resumes_and_logs_continuous_timesteps(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = REINFORCE("MlpPolicy", env, n_steps=32, seed=0)
    model.set_logger(configure(str(tmp_path / "first"), ["csv"]))
    model.learn(300)  # rounded up to whole rollouts of 64 steps: 320
    assert model.num_timesteps == 320 and model._n_updates == 5
    moments = model._return_moments
    model.save(tmp_path / "model")

    loaded = REINFORCE.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=2, seed=1))
    assert loaded.num_timesteps == 320 and loaded._n_updates == 5 and loaded._return_moments == moments
    obs = loaded.env.reset()
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    loaded.set_parameters(model.get_parameters())  # parameters round trip too
    loaded.set_logger(configure(str(tmp_path / "second"), ["csv"]))
    loaded.learn(200, reset_num_timesteps=False)  # on top of 320: until 520, i.e. 576 after whole rollouts
    assert loaded.num_timesteps == 576 and loaded._n_updates == 9

    def logged(folder: str) -> list[int]:
        with open(tmp_path / folder / "progress.csv") as file:
            return [int(row["time/total_timesteps"]) for row in csv.DictReader(file)]

    assert logged("first") == [64, 128, 192, 256, 320]
    assert logged("second") == [384, 448, 512, 576]


# --- Bad input: spaces, policy_kwargs, save files ----------------------------------------------------------------


def _env_with(observation_space: gym.Space | None = None, action_space: gym.Space | None = None) -> gym.Env:
    class Env(gym.Env):
        def __init__(self):
            self.observation_space = observation_space or spaces.Box(-1.0, 1.0, shape=(2,))
            self.action_space = action_space or spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, True, False, {}

    return Env()


UNSUPPORTED = {
    "Text observations": dict(observation_space=spaces.Text(5)),
    "Graph observations": dict(observation_space=spaces.Graph(spaces.Box(0.0, 1.0, (2,)), spaces.Discrete(2))),
    "Sequence observations": dict(observation_space=spaces.Sequence(spaces.Discrete(2))),
    "Tuple observations": dict(observation_space=spaces.Tuple([spaces.Discrete(2), spaces.Discrete(3)])),
    "nested Dict observations": dict(observation_space=spaces.Dict({"a": spaces.Dict({"b": spaces.Discrete(2)})})),
    "Text actions": dict(action_space=spaces.Text(5)),
    "Sequence actions": dict(action_space=spaces.Sequence(spaces.Discrete(2))),
    "Tuple actions": dict(action_space=spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)])),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_spaces_are_rejected_at_construction(case):
    env = _env_with(**UNSUPPORTED[case])
    kind = "action" if "actions" in case else "observation"
    expected = (
        "Discrete, Box, MultiDiscrete, MultiBinary" if kind == "action" else "Box, Discrete, MultiDiscrete, MultiBinary, Dict"
    )
    with pytest.raises(TypeError, match=f"does not support the {kind} space .*supported: {expected}"):
        REINFORCE("MultiInputPolicy" if "Dict" in case else "MlpPolicy", env)


def test_unknown_policy_kwargs_key_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match=r"policy_kwargs has unknown key\(s\) 'net_arc'; ReinforcePolicy accepts: .*net_arch"):
        REINFORCE("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arc=[8]))
    with pytest.raises(ValueError, match=r"'use_sde' \(use_sde: pass it to REINFORCE itself"):
        REINFORCE("MlpPolicy", "CartPole-v1", policy_kwargs=dict(use_sde=True))
    REINFORCE(MlpPolicy, "CartPole-v1", policy_kwargs=dict(net_arch=[8], action_prob_floor=0.1))


def test_custom_policy_classes_keep_their_own_keyword_arguments():
    class ScaledPolicy(MlpPolicy):
        """Takes a key of its own out of **kwargs, as users' policies do: PPO and A2C accept it, so must we."""

        def __init__(self, *args, **kwargs):
            self.scale = kwargs.pop("scale", 1.0)
            super().__init__(*args, **kwargs)

    model = REINFORCE(ScaledPolicy, "CartPole-v1", policy_kwargs=dict(scale=2.0, net_arch=[8]))
    assert model.policy.scale == 2.0
    # REINFORCE calls its policies' own methods (sample, evaluate_actor, ...): SB3's policy classes are refused.
    with pytest.raises(TypeError, match="policy must be 'MlpPolicy', 'CnnPolicy', 'MultiInputPolicy' or a subclass"):
        REINFORCE(ActorCriticPolicy, "CartPole-v1")

    class Explicit(MlpPolicy):
        def __init__(self, observation_space, action_space, lr_schedule, width: int = 8, **kwargs):
            super().__init__(observation_space, action_space, lr_schedule, net_arch=[width], **kwargs)

    assert REINFORCE(Explicit, "CartPole-v1", policy_kwargs=dict(width=4, action_prob_floor=0.1)).policy.net_arch == [4]


@pytest.fixture(scope="module")
def saves(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saves")
    REINFORCE("MlpPolicy", "CartPole-v1", n_steps=32).save(folder / "good.zip")
    PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32).save(folder / "ppo.zip")
    good = (folder / "good.zip").read_bytes()
    (folder / "truncated.zip").write_bytes(good[: len(good) // 2])
    (folder / "text.zip").write_text("not a model")
    with zipfile.ZipFile(folder / "foreign.zip", "w") as archive:
        archive.writestr("readme.txt", "some other zip")
    with zipfile.ZipFile(folder / "good.zip") as source:
        members = {name: source.read(name) for name in source.namelist()}
    variants = {
        "bad_weights.zip": {**members, "policy.pth": b"\x80\x04garbage" * 8},
        "no_optimizer.zip": {k: v for k, v in members.items() if k != "policy.optimizer.pth"},
        "bad_data.zip": {**members, "data": b"{not json"},
    }
    for name, content in variants.items():
        with zipfile.ZipFile(folder / name, "w") as archive:
            for member, data in content.items():
                archive.writestr(member, data)
    return folder


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("missing.zip", FileNotFoundError, r"No saved model at .*missing\.zip"),
        (".", ValueError, r"is a directory, not a model saved with REINFORCE\.save\(\)"),
        ("truncated.zip", ValueError, r"not a complete Stable-Baselines3 save.*truncated"),
        ("text.zip", ValueError, r"is not a model saved with save\(\) \(a zip file\)"),
        ("foreign.zip", ValueError, r"not a complete Stable-Baselines3 save: it has no 'data' entry"),
        ("ppo.zip", ValueError, r"is not a REINFORCE save.*saved by another algorithm"),
        ("bad_weights.zip", ValueError, r"holds damaged network weights"),
        ("no_optimizer.zip", ValueError, r"incomplete REINFORCE save: it has no policy\.optimizer\.pth"),
        ("bad_data.zip", ValueError, r"is not a readable Stable-Baselines3 save: its 'data' entry is corrupted"),
    ],
)
def test_loading_a_bad_file_gives_one_clear_error(saves, name, error, message):
    with pytest.raises(error, match=message):
        REINFORCE.load(saves / name)


def test_loading_from_a_file_object_and_without_suffix(saves):
    assert isinstance(REINFORCE.load(io.BytesIO((saves / "good.zip").read_bytes())), REINFORCE)
    with open(saves / "good.zip", "rb") as file:
        assert isinstance(REINFORCE.load(file), REINFORCE)
    assert isinstance(REINFORCE.load(saves / "good"), REINFORCE)
    with pytest.raises(ValueError, match="is not a REINFORCE save"):
        REINFORCE.load(io.BytesIO((saves / "ppo.zip").read_bytes()))


def test_errors_that_are_not_about_the_file_are_not_relabelled(saves):
    with pytest.raises(RuntimeError, match="foo") as caught:
        REINFORCE.load(saves / "good.zip", device="foo")
    assert not isinstance(caught.value, ValueError)


def test_the_class_signature_is_the_constructor_s():
    """What inspect.signature, help() and the API reference show: __init__'s parameters and defaults, not __new__'s."""
    parameters = inspect.signature(REINFORCE).parameters
    assert list(parameters)[:3] == ["policy", "env", "learning_rate"] and "args" not in parameters
    assert parameters["baseline"].default == "value" and parameters["incomplete_episodes"].default == "carry"
