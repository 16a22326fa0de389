"""
Everything REINFORCE checks about its input, in one place: the hyper-parameters (on every way in: the constructor,
``load`` with its kwargs and ``custom_objects``), the spaces, ``policy_kwargs``, A2C/PPO arguments it does not have,
and NaN or infinity in observations and rewards (:class:`NonFiniteError`).
"""

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.type_aliases import Schedule

from sb3_reinforce.reinforce.type_aliases import BASELINES, INCOMPLETE_EPISODES, Obs, index_obs

# A2C / PPO arguments that REINFORCE does not have, with why and what to use instead (drop-in comparisons).
NOT_REINFORCE_ARGUMENTS = {
    "gae_lambda": "REINFORCE uses Monte Carlo returns, not GAE; for A2C's estimator (critic bootstrap at the rollout's "
    "end) use baseline='value' with incomplete_episodes='bootstrap'",
    "use_rms_prop": "REINFORCE uses the policy's optimizer (Adam by default); for RMSprop pass "
    "policy_kwargs=dict(optimizer_class=th.optim.RMSprop)",
    "rms_prop_eps": "REINFORCE uses the policy's optimizer (Adam by default); for RMSprop pass "
    "policy_kwargs=dict(optimizer_class=th.optim.RMSprop, optimizer_kwargs=dict(eps=...))",
    "batch_size": "REINFORCE takes one gradient step on the whole rollout (n_steps * n_envs steps); there are no minibatches",
    "n_epochs": "REINFORCE takes one gradient step per rollout; several epochs on the same rollout would need PPO's "
    "clipped objective (the policy gradient is only valid for the policy that sampled the steps)",
    "clip_range": "REINFORCE has no PPO ratio clipping; its one step per rollout is bounded by max_grad_norm",
    "clip_range_vf": "REINFORCE does not clip the critic; the critic (baseline='value') is trained on standardised returns",
    "target_kl": "REINFORCE takes one gradient step per rollout, so there is no early stopping on the KL divergence",
}
SUPPORTED_ACTION_SPACES = (spaces.Discrete, spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict)


class NonFiniteError(ValueError):
    """A NaN or infinity in an observation, a reward, the loss or a gradient; raised before any weight changes."""


def diverged(what: str, learning_rate: float) -> NonFiniteError:
    """The error for a loss, a gradient or an action distribution that is not finite, although the inputs were."""
    return NonFiniteError(
        f"{what}; no weight was changed. This rollout's observations and rewards are finite (they are checked), so "
        f"the network's outputs or the loss overflowed: the weights were driven to extreme values, as a learning rate "
        f"too large for this task does (learning_rate={learning_rate:g} now), or the returns are too large for "
        "float32 (scale the rewards down, e.g. with VecNormalize(norm_reward=True))."
    )


def is_real(value: Any) -> bool:
    """A real number (Python's or numpy's), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_finite(name: str, values: Obs, rollout_step: int, first_env: int = 0) -> None:
    """
    Raise a :class:`NonFiniteError` naming the env and the step if a float array of ``values`` (one row per env,
    the first being env ``first_env``) holds a NaN or an infinity.
    """
    arrays = values.values() if isinstance(values, dict) else (values,)
    for array in arrays:
        # One reduction first: NaN and infinities propagate through a sum (taken in float64, so that finite float32
        # values cannot overflow it); only if it is not finite are the values looked at one by one.
        if array.dtype.kind != "f" or math.isfinite(array.sum(dtype=np.float64)):
            continue
        non_finite = ~np.isfinite(array.reshape(len(array), -1))
        if not non_finite.any():  # float64 values so large that their sum overflowed
            continue
        bad = np.argwhere(non_finite)[0, 0]
        raise NonFiniteError(
            f"Non-finite {name} from env index {first_env + bad} at step {rollout_step} of the rollout: "
            f"{array[bad]!r}. REINFORCE stops before using it; check the environment (or its wrappers)."
        )


def check_finite_rollout(name: str, values: Obs, first_step: int) -> None:
    """
    :func:`check_finite` for a whole rollout, ``(n_steps, n_envs, ...)`` per array: one reduction when all is finite.

    :param first_step: The step of the rollout that produced the first row (0: the observation it started from)
    """
    arrays = list(values.values()) if isinstance(values, dict) else [values]
    if all(array.dtype.kind != "f" or math.isfinite(array.sum(dtype=np.float64)) for array in arrays):
        return
    for row in range(len(arrays[0])):
        check_finite(name, index_obs(values, row), first_step + row)


def check_one_of(name: str, value: Any, accepted: tuple[str, ...]) -> None:
    """Raise a ValueError naming ``name`` and the ``accepted`` values unless ``value`` is one of them."""
    if value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))}, got {value!r}")


def refuse_not_reinforce_arguments(arguments: dict[str, Any], where: str) -> None:
    """Raise a ``TypeError`` for an A2C/PPO argument REINFORCE does not have, saying why and what to use instead."""
    for name in arguments:
        if name in NOT_REINFORCE_ARGUMENTS:
            raise TypeError(
                f"{where} got {name!r}, an A2C/PPO argument that REINFORCE does not have: {NOT_REINFORCE_ARGUMENTS[name]}"
            )


# The constructor arguments validate_hyperparameters checks, read from the model on every way in.
HYPERPARAMETERS = (
    "learning_rate",
    "n_steps",
    "gamma",
    "baseline",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "incomplete_episodes",
    "carry_ratio_clip",
    "carry_max_steps",
    "carry_max_bytes",
    "update_chunk_size",
    "normalize_advantage",
    "use_sde",
    "sde_sample_freq",
)


def validate_hyperparameters(
    learning_rate: float | Schedule,
    n_steps: int,
    gamma: float,
    baseline: str,
    ent_coef: float,
    vf_coef: float,
    max_grad_norm: float | None,
    incomplete_episodes: str,
    carry_ratio_clip: float,
    carry_max_steps: int,
    carry_max_bytes: int,
    update_chunk_size: int | None,
    normalize_advantage: bool,
    use_sde: bool,
    sde_sample_freq: int,
) -> None:
    """Raise a ``ValueError`` naming the argument and what it accepts."""

    def is_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    # 0 is allowed: a frozen policy (rl_zoo3's enjoy loads models with learning_rate=0).
    if not callable(learning_rate) and not (is_real(learning_rate) and 0 <= learning_rate < math.inf):
        raise ValueError(f"learning_rate must be a finite number >= 0 or a schedule (callable), got {learning_rate!r}")
    if not is_int(n_steps) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    if not is_real(gamma) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    check_one_of("baseline", baseline, BASELINES)
    check_one_of("incomplete_episodes", incomplete_episodes, INCOMPLETE_EPISODES)
    if incomplete_episodes == "bootstrap" and baseline != "value":
        raise ValueError(
            f"incomplete_episodes='bootstrap' needs a critic: use baseline='value' (got baseline={baseline!r}), "
            "or incomplete_episodes='carry' or 'drop'"
        )
    for name, value in (("ent_coef", ent_coef), ("vf_coef", vf_coef)):
        if not is_real(value) or not 0.0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if max_grad_norm is not None and not (is_real(max_grad_norm) and 0.0 < max_grad_norm < math.inf):
        raise ValueError(f"max_grad_norm must be a positive finite number, or None to disable clipping, got {max_grad_norm!r}")
    if not is_real(carry_ratio_clip) or not 0.0 < carry_ratio_clip < math.inf:
        raise ValueError(f"carry_ratio_clip must be a positive finite number, got {carry_ratio_clip!r}")
    if not is_int(carry_max_steps) or carry_max_steps < 1:
        raise ValueError(f"carry_max_steps must be an integer >= 1, got {carry_max_steps!r}")
    if not is_int(carry_max_bytes) or carry_max_bytes < 0:
        raise ValueError(f"carry_max_bytes must be an integer >= 0 (0: nothing is held over), got {carry_max_bytes!r}")
    for name, flag in (("normalize_advantage", normalize_advantage), ("use_sde", use_sde)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if not is_int(sde_sample_freq) or sde_sample_freq < -1:
        raise ValueError(
            f"sde_sample_freq must be an integer >= 1, or -1 (only at the start of a rollout), got {sde_sample_freq!r}"
        )
    if update_chunk_size is not None and (not is_int(update_chunk_size) or update_chunk_size < 1):
        raise ValueError(
            f"update_chunk_size must be an integer >= 1, or None (chosen from the observation size), got {update_chunk_size!r}"
        )


def check_construction(
    env: Any,
    stats_window_size: Any,
    tensorboard_log: Any = None,
    policy_kwargs: Any = None,
    rollout_buffer_class: Any = None,
    rollout_buffer_kwargs: Any = None,
    verbose: Any = 0,
    seed: Any = None,
    device: Any = "auto",
) -> None:
    """The constructor's arguments that SB3 uses at once (before REINFORCE's own checks): a clear error for each."""
    import os

    import gymnasium as gym
    import torch as th
    from stable_baselines3.common.vec_env import VecEnv

    def is_int(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if env is not None and not isinstance(env, (str, gym.Env, VecEnv)):
        raise TypeError(f"env must be a gymnasium.Env, a VecEnv or a registered env id (str), got {env!r}")
    if not is_int(stats_window_size) or stats_window_size < 1:
        raise ValueError(f"stats_window_size must be an integer >= 1, got {stats_window_size!r}")
    if tensorboard_log is not None and not isinstance(tensorboard_log, (str, os.PathLike)):
        raise TypeError(f"tensorboard_log must be a folder (str or path) or None, got {tensorboard_log!r}")
    for name, value in (("policy_kwargs", policy_kwargs), ("rollout_buffer_kwargs", rollout_buffer_kwargs)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict of keyword arguments or None, got {value!r}")
    if rollout_buffer_class is not None and not isinstance(rollout_buffer_class, type):
        raise TypeError(
            "rollout_buffer_class must be a subclass of ReinforceRolloutBuffer or ReinforceDictRolloutBuffer, or None, "
            f"got {rollout_buffer_class!r}"
        )
    if not is_int(verbose) or verbose < 0:
        raise ValueError(f"verbose must be an integer >= 0 (0: no output, 1: info, 2: debug), got {verbose!r}")
    if seed is not None and (not is_int(seed) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")
    if not isinstance(device, th.device) and device != "auto":
        try:
            th.device(device)
        except (RuntimeError, TypeError):
            accepted = "'auto', a torch.device or a device name ('cpu', 'cuda', 'cuda:1')"
            raise ValueError(f"device must be {accepted}, got {device!r}") from None


def check_net_arch(net_arch: Any) -> None:
    """``policy_kwargs["net_arch"]`` as SB3 reads it: a list of layer sizes, or a dict of them for ``pi`` and ``vf``."""

    def sizes(value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(isinstance(size, (int, np.integer)) and size > 0 for size in value)

    if net_arch is None or sizes(net_arch):
        return
    if isinstance(net_arch, dict) and set(net_arch) <= {"pi", "vf"} and all(sizes(value) for value in net_arch.values()):
        return
    raise ValueError(
        "policy_kwargs['net_arch'] must be a list of layer sizes (e.g. [64, 64]) or a dict of them for the actor and "
        f"the critic (e.g. dict(pi=[64, 64], vf=[64, 64])), got {net_arch!r}"
    )


def check_spaces(observation_space: spaces.Space | None, action_space: spaces.Space | None) -> None:
    """Raise a ``TypeError`` listing what REINFORCE supports (spaces are ``None`` while loading without an env)."""

    def names(kinds: tuple[type, ...]) -> str:
        return ", ".join(kind.__name__ for kind in kinds)

    if action_space is not None and not isinstance(action_space, SUPPORTED_ACTION_SPACES):
        raise TypeError(
            f"REINFORCE does not support the action space {action_space}; supported: {names(SUPPORTED_ACTION_SPACES)}"
        )
    if observation_space is None:
        return
    inner = SUPPORTED_OBSERVATION_SPACES[:-1]  # what a Dict observation may hold
    if not isinstance(observation_space, SUPPORTED_OBSERVATION_SPACES) or (
        isinstance(observation_space, spaces.Dict)
        and not all(isinstance(subspace, inner) for subspace in observation_space.spaces.values())
    ):
        raise TypeError(
            f"REINFORCE does not support the observation space {observation_space}; "
            f"supported: {names(SUPPORTED_OBSERVATION_SPACES)} (a Dict of {names(inner)}, not nested)"
        )
