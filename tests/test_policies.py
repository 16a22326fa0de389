"""The exploration floor (``action_prob_floor``) and the Gaussian's minimum standard deviation (``min_std``)."""

import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce.distributions import mix_with_uniform
from tests.envs import MatchTargetEnv

FLOOR = 0.2
# name -> (env factory, number of choices of each (sub-)action)
DISCRETE_ENVS = {
    "Discrete": (lambda: IdentityEnv(4), 4),
    "MultiDiscrete": (lambda: IdentityEnvMultiDiscrete(2), 2),
    "MultiBinary": (lambda: IdentityEnvMultiBinary(3), 2),
}


def _saturate(model: REINFORCE, logit: float = 1e4) -> None:
    """Make the actor deterministic in float32: a logit of +-1e4 for every choice, whatever the observation."""
    with th.no_grad():
        action_net = model.policy.action_net
        action_net.weight.zero_()
        if isinstance(model.action_space, spaces.Discrete):
            signs = -th.ones(action_net.bias.numel())
            signs[0] = 1.0
        else:  # per sub-action (MultiDiscrete with 2 choices) or per bit (MultiBinary): alternate
            signs = th.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(action_net.bias.numel())])
        action_net.bias.copy_(logit * signs)


def _parts(distribution) -> list[th.distributions.Distribution]:
    return distribution.distribution if isinstance(distribution.distribution, list) else [distribution.distribution]


def test_mix_with_uniform_is_the_mixture_and_stays_exact_far_below_the_floor():
    log_probs = th.log_softmax(th.tensor([[0.0, 1.0, 2.0], [3000.0, 0.0, -3000.0]]), dim=-1)
    mixed = mix_with_uniform(log_probs, 0.3)
    th.testing.assert_close(th.exp(mixed), 0.7 * th.exp(log_probs) + 0.1)
    assert th.all(mixed >= math.log(0.1) - 1e-6)
    th.testing.assert_close(th.exp(mixed).sum(-1), th.ones(2))


@pytest.mark.parametrize("space", sorted(DISCRETE_ENVS))
def test_sampled_actions_come_from_the_model_and_never_fall_below_the_floor(space):
    make_env, n_choices = DISCRETE_ENVS[space]
    model = REINFORCE(
        "MlpPolicy", DummyVecEnv([make_env] * 4), n_steps=256, policy_kwargs=dict(action_prob_floor=FLOOR), seed=0
    )
    _saturate(model)
    _, callback = model._setup_learn(1024)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    buffer = model.rollout_buffer
    obs = th.as_tensor(buffer.observations.reshape(-1, *model.observation_space.shape))
    actions = th.as_tensor(buffer.actions.reshape(len(obs), -1).astype(np.float32))  # as train() reads them
    if space == "Discrete":
        actions = actions.long().flatten()
    stored = th.as_tensor(buffer.log_probs.flatten())
    distribution = model.policy.get_distribution(obs)
    # The stored log-probabilities are the model's own, for exactly the stored actions ...
    th.testing.assert_close(distribution.log_prob(actions).detach(), stored)
    # ... never below log(floor / n) per (sub-)action, although the actor gives all but one choice probability 0 ...
    n_dims = 1 if space == "Discrete" else model.action_space.shape[0]
    assert th.all(stored >= n_dims * math.log(FLOOR / n_choices) - 1e-4)
    # ... and exploration happens at the floor's rate: each non-modal choice with probability floor / n.
    off_mode = (actions != distribution.mode()).float().mean().item()
    assert abs(off_mode - FLOOR * (n_choices - 1) / n_choices) < 0.04, off_mode


@pytest.mark.parametrize("space", sorted(DISCRETE_ENVS))
def test_floor_log_probs_and_entropy_are_those_of_the_mixture(space):
    make_env, n_choices = DISCRETE_ENVS[space]
    floored = REINFORCE("MlpPolicy", make_env(), policy_kwargs=dict(action_prob_floor=FLOOR), seed=1)
    plain = REINFORCE("MlpPolicy", make_env(), seed=1)
    plain.policy.load_state_dict(floored.policy.state_dict())
    obs = th.as_tensor(np.stack([floored.observation_space.sample() for _ in range(16)])).float()
    d_floor, d_plain = floored.policy.get_distribution(obs), plain.policy.get_distribution(obs)
    actions = d_plain.get_actions()
    # The mixture, built independently from the textbook policy's probabilities.
    mixtures = []
    for part in _parts(d_plain):
        probs = (1 - FLOOR) * part.probs + FLOOR / n_choices
        mixtures.append(
            th.distributions.Bernoulli(probs=probs) if space == "MultiBinary" else th.distributions.Categorical(probs)
        )
    for part, mixture in zip(_parts(d_floor), mixtures, strict=True):
        th.testing.assert_close(part.probs, mixture.probs)
    if space == "MultiDiscrete":
        log_prob = sum(m.log_prob(a) for m, a in zip(mixtures, th.unbind(actions, dim=1), strict=True))
        entropy = sum(m.entropy() for m in mixtures)
    elif space == "MultiBinary":
        log_prob, entropy = mixtures[0].log_prob(actions).sum(-1), mixtures[0].entropy().sum(-1)
    else:
        log_prob, entropy = mixtures[0].log_prob(actions), mixtures[0].entropy()
    # log_prob and entropy, which the loss uses, are the mixture's; the deterministic action is unchanged.
    th.testing.assert_close(d_floor.log_prob(actions), log_prob)
    th.testing.assert_close(d_floor.entropy(), entropy)
    th.testing.assert_close(d_floor.mode(), d_plain.mode())
    np.testing.assert_array_equal(
        floored.predict(obs.numpy(), deterministic=True)[0], plain.predict(obs.numpy(), deterministic=True)[0]
    )


def test_floor_survives_save_and_load(tmp_path):
    model = REINFORCE("MlpPolicy", IdentityEnv(4), policy_kwargs=dict(action_prob_floor=FLOOR), seed=0)
    _saturate(model)
    model.save(tmp_path / "floored")
    loaded = REINFORCE.load(tmp_path / "floored")
    assert loaded.policy.action_prob_floor == FLOOR
    obs = th.tensor([0])  # Discrete(4) observation
    th.testing.assert_close(loaded.policy.get_distribution(obs).distribution.probs, th.tensor([[0.85, 0.05, 0.05, 0.05]]))


def test_min_std_bounds_the_gaussian_and_survives_save_and_load(tmp_path):
    env = IdentityEnvBox(ep_length=10)
    model = REINFORCE("MlpPolicy", env, policy_kwargs=dict(min_std=0.3, log_std_init=-20.0), seed=0)
    obs = th.as_tensor(np.stack([env.observation_space.sample() for _ in range(8)]))
    distribution = model.policy.get_distribution(obs)
    th.testing.assert_close(distribution.distribution.scale, th.full((8, 1), 0.3))
    # Without the floor, the same policy's std is exp(-20): any action off the mean is "impossible".
    plain = REINFORCE("MlpPolicy", env, policy_kwargs=dict(log_std_init=-20.0), seed=0)
    off_mean = plain.policy.get_distribution(obs).mode() + 0.5
    assert th.all(plain.policy.get_distribution(obs).log_prob(off_mean) < -1e15)
    assert th.all(distribution.log_prob(off_mean) > -3.0)
    model.learn(64)
    model.save(tmp_path / "min_std")
    loaded = REINFORCE.load(tmp_path / "min_std")
    assert loaded.policy.min_std == 0.3
    th.testing.assert_close(loaded.policy.get_distribution(obs).distribution.scale, th.full((8, 1), 0.3))


def test_learning_works_with_the_floor():
    env = DummyVecEnv([lambda: MatchTargetEnv(horizon=1)] * 4)
    model = REINFORCE("MlpPolicy", env, n_steps=32, learning_rate=3e-3, policy_kwargs=dict(action_prob_floor=0.1), seed=0)
    model.learn(6_000)
    test_env = MatchTargetEnv(horizon=1)
    obs, _ = test_env.reset(seed=7)
    correct = []
    for _ in range(200):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, _, info = test_env.step(int(action))
        correct.append(info["correct"])
        obs, _ = test_env.reset()
    assert np.mean(correct) > 0.95


@pytest.mark.parametrize(
    ("make_env", "policy_kwargs", "use_sde", "message"),
    [
        (lambda: IdentityEnv(2), dict(action_prob_floor=1.0), False, r"action_prob_floor'\] must be a number in \[0, 1\)"),
        (lambda: IdentityEnv(2), dict(action_prob_floor=-0.1), False, r"action_prob_floor'\] must be a number in \[0, 1\)"),
        (lambda: IdentityEnv(2), dict(action_prob_floor="0.1"), False, r"action_prob_floor'\] must be a number"),
        (lambda: IdentityEnvBox(), dict(action_prob_floor=0.1), False, r"applies to Discrete, MultiDiscrete and MultiBinary"),
        (lambda: IdentityEnv(2), dict(min_std=0.1), False, r"min_std'\] applies to Box actions"),
        (lambda: IdentityEnvBox(), dict(min_std=-1.0), False, r"min_std'\] must be a finite number >= 0"),
        (lambda: IdentityEnvBox(), dict(min_std=0.1), True, r"not supported with use_sde=True"),
        (lambda: IdentityEnv(2), dict(action_prob_floor=0.1, min_std=0.5), False, r"min_std'\] applies to Box actions"),
    ],
)
def test_invalid_floor_options_are_rejected(make_env, policy_kwargs, use_sde, message):
    with pytest.raises(ValueError, match=message):
        REINFORCE("MlpPolicy", make_env(), policy_kwargs=policy_kwargs, use_sde=use_sde)


def test_default_policy_is_the_textbook_one():
    """Without options the policy is the plain softmax of the actor's logits (no floor mixed in)."""
    model = REINFORCE("MlpPolicy", IdentityEnv(3), seed=0)
    obs = th.arange(3)  # Discrete observations, one-hot encoded by the policy
    with th.no_grad():
        logits = model.policy.action_net(model.policy.mlp_extractor.forward_actor(model.policy.extract_features(obs)))
        probs = model.policy.get_distribution(obs).distribution.probs
    th.testing.assert_close(probs, th.softmax(logits, dim=-1), rtol=0, atol=1e-7)


def test_numpy_numbers_are_accepted():
    model = REINFORCE("MlpPolicy", IdentityEnv(2), policy_kwargs=dict(action_prob_floor=np.float32(0.25)))
    assert model.policy.action_prob_floor == 0.25
