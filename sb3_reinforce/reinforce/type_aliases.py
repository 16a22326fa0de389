"""Types and constants shared by REINFORCE's modules (as SB3's ``common/type_aliases.py``); imports nothing of ours."""

from typing import Any, Literal, get_args

import numpy as np

Obs = np.ndarray | dict[str, np.ndarray]

Baseline = Literal["none", "mean", "value"]
IncompleteEpisodes = Literal["carry", "drop", "bootstrap"]
BASELINES: tuple[str, ...] = get_args(Baseline)
INCOMPLETE_EPISODES: tuple[str, ...] = get_args(IncompleteEpisodes)

# Defaults of the held-over store (incomplete_episodes="carry"): at most this many steps per env, and this many bytes
# for every env together (observations, actions, rewards and log-probabilities); beyond either, the oldest are dropped.
CARRY_MAX_STEPS = 10_000
CARRY_MAX_BYTES = 512 * 2**20

# An update runs its forward and backward passes on at most this many steps at a time (update_chunk_size=None), and on
# fewer when the chunk's observations (as float32) would take more than UPDATE_CHUNK_BYTES.
UPDATE_CHUNK_STEPS = 16_384
UPDATE_CHUNK_BYTES = 32 * 2**20


def index_obs(obs: Obs, index: Any) -> Obs:
    """``obs[index]`` for an array, or for each array of a Dict observation."""
    if isinstance(obs, dict):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]
