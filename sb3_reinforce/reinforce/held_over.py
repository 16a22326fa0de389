"""
The steps held over to a later rollout (``incomplete_episodes="carry"``): per env, the steps of its running episode
that earlier rollouts collected, waiting for the episode's end to have a Monte Carlo return.

:class:`HeldOverSteps` stores each rollout's share once: the steps of an episode still running when a rollout ends
are copied out of the rollout buffer into a new block of that env's list, and later rollouts append blocks of their
own without copying what is already held. Steps leave when their episode ends (:meth:`HeldOverSteps.pop`, into the
update's batch) or when a cap drops them, oldest first: ``max_steps`` per env, ``max_bytes`` for all envs together.
Observations are held in their space's own dtype where it is a one-byte integer that holds them exactly (uint8
images stay uint8), otherwise as the rollout buffer's float32. The store is part of the model's state: ``save`` writes
:meth:`HeldOverSteps.state_dict`, ``load`` restores it.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_reinforce.reinforce.type_aliases import Obs, index_obs


@dataclass
class Steps:
    """
    Steps of a rollout or of a batch: observations, actions, rewards and the log-probabilities of the actions under
    the policy that sampled them. Shaped ``(n_steps, n_envs, ...)`` for a rollout, flat ``(n, ...)`` otherwise.
    """

    observations: Obs
    actions: np.ndarray
    rewards: np.ndarray
    log_probs: np.ndarray

    def __len__(self) -> int:
        return len(self.log_probs)

    def take(self, index: Any) -> "Steps":
        return Steps(index_obs(self.observations, index), self.actions[index], self.rewards[index], self.log_probs[index])

    @property
    def nbytes(self) -> int:
        observations = self.observations.values() if isinstance(self.observations, dict) else [self.observations]
        return sum(array.nbytes for array in (*observations, self.actions, self.rewards, self.log_probs))

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (``observations.KEY`` for a Dict observation)."""
        observations = (
            {f"observations.{key}": value for key, value in self.observations.items()}
            if isinstance(self.observations, dict)
            else {"observations": self.observations}
        )
        return {**observations, "actions": self.actions, "rewards": self.rewards, "log_probs": self.log_probs}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray]) -> "Steps":
        """The inverse of :meth:`arrays`."""
        observations: Obs = (
            arrays["observations"]
            if "observations" in arrays
            else {name.split(".", 1)[1]: value for name, value in arrays.items() if name.startswith("observations.")}
        )
        return Steps(observations, arrays["actions"], arrays["rewards"], arrays["log_probs"])


def storage_dtype(space: spaces.Space) -> np.dtype | dict[str, np.dtype]:
    """
    The dtype in which :class:`HeldOverSteps` keeps observations of ``space``: the space's own where it is a one-byte
    integer type (uint8 images, MultiBinary's int8), exact and 4 times smaller than the rollout buffer's float32;
    float32 otherwise (float64 Box observations are float32 in the rollout buffer already; larger integers are exact in
    float32 up to 2^24). A dict of them for a Dict space.
    """
    if isinstance(space, spaces.Dict):
        return {key: storage_dtype(subspace) for key, subspace in space.spaces.items()}  # type: ignore[misc]
    dtype = np.dtype(space.dtype) if space.dtype is not None else np.dtype(np.float32)
    return dtype if dtype.kind in "ui" and dtype.itemsize == 1 else np.dtype(np.float32)


def action_storage_dtype(space: spaces.Space) -> np.dtype | None:
    """
    The dtype in which :class:`HeldOverSteps` keeps actions of ``space``: one byte for Discrete, MultiDiscrete and
    MultiBinary actions of at most 256 choices (SB3's rollout buffer keeps them as int64: 8 bytes), ``None`` (the
    rollout buffer's own) otherwise. A value that one byte cannot hold falls back to float32 (exact for them).
    """
    if isinstance(space, spaces.Discrete) and space.n <= 256:
        return np.dtype(np.uint8)
    if isinstance(space, spaces.MultiDiscrete) and int(np.max(space.nvec)) <= 256:
        return np.dtype(np.uint8)
    if isinstance(space, spaces.MultiBinary):
        return np.dtype(np.uint8)
    return None


def _held_copy(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """
    A copy of ``array`` in ``dtype`` if that holds its values exactly, else in float32: a wrapper that changes the
    observations but not the space (``VecNormalize`` keeps a uint8 space and returns floats) must not be rounded.
    """
    held = np.array(array, dtype=dtype)
    if dtype != np.float32 and not np.array_equal(held, array):
        return np.array(array, dtype=np.float32)
    return held


class HeldOverSteps:
    """
    Per env, the held-over steps of its running episode, as a list of blocks in the order they were collected.

    :param n_envs: Number of envs.
    :param max_steps: At most this many steps per env; beyond it, the env's oldest steps are dropped.
    :param max_bytes: At most this many bytes for all envs together; beyond it, the oldest steps (of any env) are
        dropped first.
    :param observation_dtype: See :func:`storage_dtype`.
    :param action_dtype: The dtype actions are held in, where it holds them exactly (see :func:`action_storage_dtype`);
        ``None``: as the rollout buffer gives them.
    """

    def __init__(
        self,
        n_envs: int,
        max_steps: int,
        max_bytes: int,
        observation_dtype: np.dtype | dict[str, np.dtype],
        action_dtype: np.dtype | None = None,
    ) -> None:
        self.n_envs = n_envs
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self.observation_dtype = observation_dtype
        self.action_dtype = action_dtype
        self.clear()

    def clear(self) -> None:
        """Forget every held step (the envs were reset, or went on without being recorded)."""
        self._blocks: list[list[Steps]] = [[] for _ in range(self.n_envs)]
        self._ages: list[list[int]] = [[] for _ in range(self.n_envs)]  # the rollout each block came from
        self._rollouts = 0
        self.nbytes = 0

    def n_steps(self, env: int) -> int:
        """How many steps of env ``env`` are held."""
        return sum(len(block) for block in self._blocks[env])

    def __len__(self) -> int:
        return sum(self.n_steps(env) for env in range(self.n_envs))

    def pop(self, env: int) -> list[Steps]:
        """The held steps of env ``env`` (its episode ended), in order, as blocks; the env then holds none."""
        blocks = self._blocks[env]
        self.nbytes -= sum(block.nbytes for block in blocks)
        self._blocks[env], self._ages[env] = [], []
        return blocks

    def append(self, env: int, steps: Steps) -> None:
        """
        Hold ``steps`` (flat, the oldest first) after those env ``env`` holds: a copy, observations in the storage
        dtype, never a view into the rollout buffer. Then drop the env's oldest steps beyond ``max_steps``.
        """
        if len(steps) == 0:
            return
        observations: Obs
        if isinstance(steps.observations, dict):
            assert isinstance(self.observation_dtype, dict)
            observations = {key: _held_copy(value, self.observation_dtype[key]) for key, value in steps.observations.items()}
        else:
            assert not isinstance(self.observation_dtype, dict)
            observations = _held_copy(steps.observations, self.observation_dtype)
        actions = steps.actions.copy() if self.action_dtype is None else _held_copy(steps.actions, self.action_dtype)
        block = Steps(observations, actions, steps.rewards.copy(), steps.log_probs.copy())
        self._blocks[env].append(block)
        self._ages[env].append(self._rollouts)
        self.nbytes += block.nbytes
        excess = self.n_steps(env) - self.max_steps
        if excess > 0:
            self._drop_oldest(env, excess)

    def end_rollout(self) -> None:
        """
        After a rollout's steps were appended: drop the oldest held steps, whatever their env, until at most
        ``max_bytes`` are held. The blocks of the next rollout count as younger than those held now.
        """
        self._rollouts += 1
        while self.nbytes > self.max_bytes:
            env = min((ages[0], env) for env, ages in enumerate(self._ages) if ages)[1]
            block = self._blocks[env][0]
            per_step = block.nbytes / len(block)
            self._drop_oldest(env, min(len(block), int(np.ceil((self.nbytes - self.max_bytes) / per_step))))

    def _drop_oldest(self, env: int, n_steps: int) -> None:
        blocks, ages = self._blocks[env], self._ages[env]
        while n_steps > 0:
            block = blocks[0]
            self.nbytes -= block.nbytes
            if n_steps >= len(block):
                n_steps -= len(block)
                blocks.pop(0)
                ages.pop(0)
                continue
            # A copy of the block's remaining steps: a view would keep the dropped ones in memory.
            kept = block.take(slice(n_steps, None))
            blocks[0] = Steps.from_arrays({name: array.copy() for name, array in kept.arrays().items()})
            self.nbytes += blocks[0].nbytes
            n_steps = 0

    def state_dict(self) -> dict[str, th.Tensor]:
        """The held steps as tensors, block by block (``env{i}.block{j}.{array}``), for ``save``."""
        state = {"n_envs": th.tensor(self.n_envs), "rollouts": th.tensor(self._rollouts)}
        for env, (blocks, ages) in enumerate(zip(self._blocks, self._ages, strict=True)):
            for index, (block, age) in enumerate(zip(blocks, ages, strict=True)):
                prefix = f"env{env}.block{index}."
                state[prefix + "age"] = th.tensor(age)
                state |= {prefix + name: th.from_numpy(np.ascontiguousarray(array)) for name, array in block.arrays().items()}
        return state

    def load_state_dict(self, state: dict[str, th.Tensor], strict: bool = True) -> None:
        """
        Restore what :meth:`state_dict` saved. It holds nothing for an empty ``state`` (a save from before held-over
        steps were saved), or one saved with another number of envs (the model was loaded with other envs, whose
        episodes these steps are not part of). ``strict`` is there for SB3's ``set_parameters``, and changes nothing.
        """
        self.clear()
        if not state or int(state["n_envs"]) != self.n_envs:
            return
        self._rollouts = int(state["rollouts"])
        blocks: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for name, tensor in state.items():
            if name.startswith("env"):
                env_name, block_name, array = name.split(".", 2)
                blocks.setdefault((int(env_name[3:]), int(block_name[5:])), {})[array] = tensor.cpu().numpy()
        for (env, _), arrays in sorted(blocks.items()):
            age = int(arrays.pop("age"))
            block = Steps.from_arrays(arrays)
            self._blocks[env].append(block)
            self._ages[env].append(age)
            self.nbytes += block.nbytes
