"""Optuna sampler and converter for REINFORCE, in the shape rl_zoo3's ``HYPERPARAMS_SAMPLER`` / ``_CONVERTER`` expect."""

import os
import socket
from typing import Any

import optuna
from rl_zoo3.utils import SimpleLinearSchedule
from torch import nn

NET_ARCHS = {
    "tiny": dict(pi=[64], vf=[64]),
    "small": dict(pi=[64, 64], vf=[64, 64]),
    "medium": dict(pi=[256, 256], vf=[256, 256]),
}
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def convert_reinforce_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn sampled values (as Optuna stores them) into REINFORCE hyper-parameters as a zoo yml entry holds them.

    ``incomplete_episodes="bootstrap"`` needs a critic: without ``baseline="value"`` it becomes ``"carry"``.
    ``lr_schedule="linear"`` becomes a learning rate in the zoo's yml form, ``"lin_<initial value>"`` (decaying
    linearly to 0); trials of studies made before ``lr_schedule`` was searched have a constant learning rate.
    ``log_std_init`` (sampled for Box action spaces only) goes into ``policy_kwargs``; without it the policy keeps
    SB3's initial action noise (``log_std_init=0``, a standard deviation of 1).

    :param sampled_params: The trial's parameters.
    :return: Hyper-parameters for ``REINFORCE(...)`` (a decaying learning rate as ``"lin_<lr>"``), with ``policy_kwargs``.
    """
    params = dict(sampled_params)
    params["gamma"] = 1.0 - params.pop("one_minus_gamma")
    if params.pop("lr_schedule", "constant") == "linear":
        params["learning_rate"] = f"lin_{params['learning_rate']!r}"
    if params.get("incomplete_episodes") == "bootstrap" and params.get("baseline") != "value":
        params["incomplete_episodes"] = "carry"
    policy_kwargs = {
        "net_arch": NET_ARCHS[params.pop("net_arch")],
        "activation_fn": ACTIVATIONS[params.pop("activation_fn")],
    }
    if "log_std_init" in params:
        policy_kwargs["log_std_init"] = params.pop("log_std_init")
    return {"policy_kwargs": policy_kwargs, **params}


def sample_reinforce_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sample REINFORCE hyper-parameters: learning rate (constant or decaying linearly to 0), n_steps, gamma, baseline,
    normalize_advantage, ent_coef, max_grad_norm, network size and activation, incomplete_episodes, and for a Box
    action space the initial action noise (``log_std_init``, in [-4, 1]).

    :param trial: The Optuna trial.
    :param n_actions: The action dimension for a Box action space, 0 otherwise (rl_zoo3 sets it only for Box spaces).
    :param n_envs: Number of envs (unused).
    :param additional_args: rl_zoo3's extra arguments (unused).
    :return: Hyper-parameters for ``REINFORCE(...)``.
    """
    one_minus_gamma = trial.suggest_float("one_minus_gamma", 1e-4, 0.1, log=True)
    sampled: dict[str, Any] = {
        "one_minus_gamma": one_minus_gamma,
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "linear"]),
        "n_steps": trial.suggest_categorical("n_steps", [32, 64, 128, 256, 512, 1024, 2048]),
        "baseline": trial.suggest_categorical("baseline", ["none", "mean", "value"]),
        "normalize_advantage": trial.suggest_categorical("normalize_advantage", [True, False]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 5.0, log=True),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
        "activation_fn": trial.suggest_categorical("activation_fn", list(ACTIVATIONS)),
        "incomplete_episodes": trial.suggest_categorical("incomplete_episodes", ["carry", "drop", "bootstrap"]),
    }
    if n_actions > 0:  # a Box action space: how much the Gaussian policy explores at first
        sampled["log_std_init"] = trial.suggest_float("log_std_init", -4.0, 1.0)
    trial.set_user_attr("gamma", 1.0 - one_minus_gamma)
    # Which worker ran the trial (several processes or machines may share one study).
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    params = convert_reinforce_params(sampled)
    if sampled["lr_schedule"] == "linear":  # the schedule rl_zoo3 makes of the entry's "lin_<lr>"
        params["learning_rate"] = SimpleLinearSchedule(sampled["learning_rate"])
    return params
