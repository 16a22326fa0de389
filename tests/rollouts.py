"""Helpers for tests that drive REINFORCE one rollout at a time and read the batch it assembled."""

from collections.abc import Callable

import numpy as np

from sb3_reinforce import REINFORCE
from sb3_reinforce.reinforce.batch import Batch
from sb3_reinforce.reinforce.held_over import Steps


def start(model: REINFORCE) -> Callable[[], Batch | None]:
    """Set the model up as ``learn()`` does; return a function that collects one rollout and gives its batch."""
    _, callback = model._setup_learn(10_000)

    def collect() -> Batch | None:
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        return model.rollout_buffer.batch

    return collect


def whole(batch: Batch) -> Steps:
    """Every step of the batch in one chunk (observations as float32, as the update reads them)."""
    chunks = list(batch.chunks(len(batch)))
    assert len(chunks) == 1
    return chunks[0][1]


def held_observations(model: REINFORCE, env: int) -> np.ndarray:
    """The observations env ``env`` holds over, oldest first (as float32)."""
    blocks = model._held_over._blocks[env]
    return np.concatenate([block.observations for block in blocks]).astype(np.float32) if blocks else np.zeros((0,))
