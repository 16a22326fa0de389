import inspect
import io
import math
import pathlib
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_obs_shape
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule, TensorDict
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_reinforce.reinforce import checks
from sb3_reinforce.reinforce.batch import Batch, to_torch
from sb3_reinforce.reinforce.buffers import ReinforceDictRolloutBuffer, ReinforceRolloutBuffer, check_rollout_buffer_class
from sb3_reinforce.reinforce.checks import NonFiniteError
from sb3_reinforce.reinforce.estimator import (
    baseline_values,
    carried_step_weights,
    compute_advantages,
    policy_gradient_loss,
    update_scale,
)
from sb3_reinforce.reinforce.held_over import HeldOverSteps, Steps, action_storage_dtype, storage_dtype
from sb3_reinforce.reinforce.policies import (
    CnnPolicy,
    MlpPolicy,
    MultiInputPolicy,
    ReinforcePolicy,
    check_policy_class,
    policy_kwargs_error,
)
from sb3_reinforce.reinforce.save_file import (
    check_loaded_state,
    check_save_file,
    load_errors,
    safe_data_objects,
    save_atomically,
)
from sb3_reinforce.reinforce.type_aliases import (
    CARRY_MAX_BYTES,
    CARRY_MAX_STEPS,
    UPDATE_CHUNK_BYTES,
    UPDATE_CHUNK_STEPS,
    Baseline,
    IncompleteEpisodes,
)

SelfREINFORCE = TypeVar("SelfREINFORCE", bound="REINFORCE")


class _InitSignature:
    """
    A class's signature as its ``__init__``'s: ``REINFORCE.__new__`` (which names the A2C/PPO arguments REINFORCE does
    not have) would otherwise make ``inspect.signature``, ``help()`` and the API reference show ``(*args, **kwargs)``.
    """

    def __get__(self, instance: Any, owner: type) -> inspect.Signature:
        signature = inspect.signature(vars(owner).get("__init__") or owner.__init__)  # type: ignore[misc]
        return signature.replace(parameters=list(signature.parameters.values())[1:])  # without self


# train() warns when a learn() call has collected this many rollouts without an update (no episode ended).
ROLLOUTS_BEFORE_WARNING = 3


class REINFORCE(OnPolicyAlgorithm):
    """
    REINFORCE: the Monte Carlo policy gradient (Williams, 1992), with an optional baseline. Each rollout of ``n_steps``
    steps per env gives one gradient step on

    ``loss = -mean_t(w_t * A_t * log pi(a_t|s_t)) - ent_coef * H[pi] + vf_coef * mean_t((c(s_t) - (G_t - mu) / sigma)^2)``

    with ``G_t`` the reward-to-go of the step within its own episode, ``A_t = G_t - b_t`` (``b_t`` chosen by
    ``baseline``; the critic ``c`` predicts returns standardised by their running mean ``mu`` and deviation ``sigma``,
    so ``V(s) = mu + sigma * c(s)``) and ``w_t`` 1 for this rollout's steps, a clipped importance ratio for carried
    ones. The estimator's pieces (and why ``gamma^t`` is left out, and how time limits are handled) are in
    :mod:`sb3_reinforce.reinforce.estimator`.

    Paper: https://link.springer.com/article/10.1007/BF00992696 ; Sutton & Barto (2018), sections 13.3 and 13.4.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate (Adam by default), it can be a function of the current progress remaining
        (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update (the rollout is n_steps * n_envs steps,
        one gradient step per rollout)
    :param gamma: Discount factor in [0, 1]
    :param baseline: What is subtracted from the returns: ``"none"`` (textbook REINFORCE, ``A_t = G_t``), ``"mean"``
        (a running mean of earlier batches' returns, no critic) or ``"value"`` (a learned state value ``V(s_t)``,
        "REINFORCE with baseline", trained by MSE weighted by ``vf_coef`` on standardised returns, so that any reward
        scale float32 holds works, returns up to about 1e36 in magnitude; see
        :func:`~sb3_reinforce.reinforce.estimator.update_scale`). Only ``"value"`` has a critic.
    :param normalize_advantage: Standardise the advantages (returns minus baseline) over each batch
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation (``baseline="value"`` only)
    :param max_grad_norm: Maximum global norm of the gradient (clipping); ``None`` disables clipping
    :param incomplete_episodes: What happens to the steps of an episode still running when the rollout ends.
        ``"carry"``: held over to the update in which their episode ends, with their exact returns and the weight
        ``min(pi(a|s) / beta(a|s), carry_ratio_clip)`` (``beta`` the policy that sampled them), and dropped when a
        rollout is abandoned (see :meth:`learn`). ``"drop"``: left out. ``"bootstrap"`` (``baseline="value"`` only):
        their return ends with ``gamma^k * V(s_T)``, as in A2C. See :mod:`sb3_reinforce.reinforce.batch`.
    :param carry_ratio_clip: Upper bound of the importance weight of carried steps (``incomplete_episodes="carry"``)
    :param carry_max_steps: At most this many steps per env are held over; beyond it the oldest are dropped (their
        episode is still running after that many steps)
    :param carry_max_bytes: At most this many bytes are held over for all envs together (observations, in their
        space's dtype where it is a one-byte integer, else float32, plus actions, rewards and log-probabilities; 512 MiB
        by default); beyond it the oldest steps, of any env, are dropped. Held-over steps are saved with the model.
    :param update_chunk_size: The update's forward and backward passes run on at most this many steps at a time,
        their gradients added up: the same gradient as on the whole batch, with memory that does not grow with it.
        ``None``: 16,384 steps, fewer where their observations (as float32) would take more than 32 MiB
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action noise exploration
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE (-1: only at the rollout's start)
    :param rollout_buffer_class: Rollout buffer class to use, a subclass of ``ReinforceRolloutBuffer`` or
        ``ReinforceDictRolloutBuffer``. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run; auto: the GPU if possible
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    rollout_buffer: ReinforceRolloutBuffer | ReinforceDictRolloutBuffer
    __signature__ = _InitSignature()
    policy: ReinforcePolicy  # or its Cnn / MultiInput variant (check_policy_class): the same methods

    def __init__(
        self,
        policy: str | type[MlpPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 512,
        gamma: float = 0.99,
        baseline: Baseline = "value",
        normalize_advantage: bool = False,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        incomplete_episodes: IncompleteEpisodes = "carry",
        carry_ratio_clip: float = 1.0,
        carry_max_steps: int = CARRY_MAX_STEPS,
        carry_max_bytes: int = CARRY_MAX_BYTES,
        update_chunk_size: int | None = None,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        checks.check_construction(
            env,
            stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
        )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=1.0,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,  # type: ignore[arg-type]
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=checks.SUPPORTED_ACTION_SPACES,  # SB3's assertion; check_spaces raises a TypeError first
        )
        self.baseline = baseline
        self.normalize_advantage = normalize_advantage
        self.incomplete_episodes = incomplete_episodes
        self.carry_ratio_clip = carry_ratio_clip
        self.carry_max_steps = carry_max_steps
        self.carry_max_bytes = carry_max_bytes
        self.update_chunk_size = update_chunk_size
        # Running (mean, variance) of returns; saved with the model so that training resumes where it stopped.
        self._return_moments: tuple[float, float] | None = None
        # The steps of running episodes held over from earlier rollouts (incomplete_episodes="carry"), built with the
        # model in _setup_model; saved with the model (a torch state, like the weights).
        self._held_over: HeldOverSteps
        # Rollouts of the current learn() call without an update, and the updates made before it (see train()).
        self._rollouts_without_update = self._updates_at_learn_start = 0

        if _init_setup_model:
            self._setup_model()

    def __new__(cls, *args: Any, **kwargs: Any) -> "REINFORCE":
        # Before __init__, so that an A2C/PPO argument gets its reason rather than Python's "unexpected keyword".
        checks.refuse_not_reinforce_arguments(kwargs, f"{cls.__name__}()")
        return super().__new__(cls)

    def _setup_model(self) -> None:
        # Every way in ends here (the constructor, and load with its kwargs and custom_objects): check what was set.
        self._check_hyperparameters()
        checks.check_spaces(self.observation_space, self.action_space)
        if self.rollout_buffer_class is None:
            is_dict = isinstance(self.observation_space, spaces.Dict)
            self.rollout_buffer_class = ReinforceDictRolloutBuffer if is_dict else ReinforceRolloutBuffer
        check_rollout_buffer_class(self.rollout_buffer_class)
        check_policy_class(self.policy_class)
        try:
            super()._setup_model()
        except TypeError as error:  # SB3 builds the policy with policy_kwargs: name the key it refused
            raise policy_kwargs_error(error, self.policy_class, self.policy_kwargs) from error
        observation_dtype, action_dtype = storage_dtype(self.observation_space), action_storage_dtype(self.action_space)
        self._held_over = HeldOverSteps(
            self.n_envs, self.carry_max_steps, self.carry_max_bytes, observation_dtype, action_dtype
        )
        if self._return_moments is not None:  # a loaded model: saved as a JSON list
            mean, var = self._return_moments
            self._return_moments = (float(mean), float(var))

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        # Reject unsupported spaces before SB3's wrappers fail on them with a less helpful error.
        checks.check_spaces(env.observation_space, env.action_space)
        return OnPolicyAlgorithm._wrap_env(env, verbose, monitor_wrapper)

    def _check_hyperparameters(self) -> None:
        checks.validate_hyperparameters(**{name: getattr(self, name) for name in checks.HYPERPARAMETERS})

    @property
    def _has_critic(self) -> bool:
        """Whether the policy's value head is trained and read (``baseline="value"``): decided here only."""
        return self.baseline == "value"

    def _excluded_save_params(self) -> list[str]:
        # The held-over steps are saved as tensors (_get_torch_save_params), not in the data entry.
        return [*super()._excluded_save_params(), "_held_over"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, torch_variables = super()._get_torch_save_params()
        return [*state_dicts, "_held_over"], torch_variables

    def set_parameters(
        self,
        load_path_or_dict: str | TensorDict,
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """As SB3's; a save from before held-over steps were saved (no ``_held_over`` entry) holds none."""
        params: dict[str, Any]
        if isinstance(load_path_or_dict, dict):
            params = load_path_or_dict
        else:
            _, params, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)  # type: ignore[assignment]
        if exact_match and "_held_over" not in params:
            params = {**params, "_held_over": {}}
        super().set_parameters(params, exact_match, device)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        self._check_hyperparameters()  # also what was set on the model since (model.baseline = ...)
        self._held_over.max_steps, self._held_over.max_bytes = self.carry_max_steps, self.carry_max_bytes
        if reset_num_timesteps or self._last_obs is None:
            # The envs are reset: the episodes the held-over steps belong to are gone.
            self._drop_held_over_steps()
        self._rollouts_without_update, self._updates_at_learn_start = 0, self._n_updates
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def _drop_held_over_steps(self) -> None:
        """Forget the held-over steps: their episodes were reset, or went on without being recorded."""
        self._held_over.clear()

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect ``n_rollout_steps`` steps per env with the current policy and fill the rollout buffer, as SB3 does, but
        with the actions stored exactly as sampled, episode ends recorded, and no critic value added to the rewards
        (with a critic, its outputs after time-limit truncations are recorded for ``train()``). Observations and
        rewards are checked for NaN and infinities once per rollout (:class:`NonFiniteError` names the env and step).

        :return: True if the rollout is complete, False if a callback stopped it (then it is abandoned).
        """
        assert self._last_obs is not None, "No previous observation was provided"
        assert isinstance(rollout_buffer, (ReinforceRolloutBuffer, ReinforceDictRolloutBuffer))
        self.policy.set_training_mode(False)

        n_steps = 0
        rollout_buffer.reset()
        unused_values = th.zeros(env.num_envs)
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)

        callback.on_rollout_start()
        checks.check_finite("observation", self._last_obs, 0)  # type: ignore[arg-type]

        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)

            actions, log_probs = self.policy.sample(self._last_obs, n_steps)  # type: ignore[arg-type]
            new_obs, rewards, dones, infos = env.step(self.policy.env_actions(actions))
            self.num_timesteps += env.num_envs

            # Give access to local variables
            callback.update_locals(locals())
            if not callback.on_step():
                # The rollout is abandoned, but the env has moved on: start the next rollout where the env now is,
                # and drop the held-over steps, whose episodes went on without being recorded.
                self._last_obs = new_obs  # type: ignore[assignment]
                self._last_episode_starts = dones
                self._drop_held_over_steps()
                return False

            self._update_info_buffer(infos, dones)
            n_steps += 1

            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, unused_values, log_probs)  # type: ignore[arg-type]
            critic = self.policy.critic_at_truncations(infos, dones, n_steps) if self._has_critic else None
            rollout_buffer.record_episode_ends(dones, *(critic or (None, None)))
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        rollout_buffer.check_finite(new_obs)  # type: ignore[arg-type]

        if self.incomplete_episodes == "bootstrap":  # the critic's output after the rollout, for the unfinished episodes
            rollout_buffer.last_critic = self.policy.critic_output(new_obs)  # type: ignore[arg-type]
        held_over = self._held_over if self.incomplete_episodes == "carry" else None
        rollout_buffer.finish(self.gamma, self.incomplete_episodes, held_over)

        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def train(self) -> None:
        """
        One gradient step of REINFORCE on the batch of the rollout just collected (its steps whose episode ended, and
        held-over steps whose episode ended in it), computed a chunk of ``update_chunk_size`` steps at a time.

        Nothing is changed (weights, optimizer state, running moments) unless the loss and its gradient are finite;
        the held-over steps are dropped if it raises (the rollout is then abandoned, see :meth:`learn`).
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        buffer = self.rollout_buffer
        batch = buffer.batch
        self.logger.record("train/used_fraction", (batch.n_fresh if batch else 0) / (buffer.buffer_size * buffer.n_envs))
        if batch is None:  # no episode ended and nothing can be bootstrapped: no return to learn from
            self._warn_if_nothing_learns()
            return

        observed = batch.returns()  # what the rewards alone give: the running moments' input
        self.logger.record("train/return_mean", float(observed.mean()))
        moments, (return_mean, return_std) = update_scale(self._return_moments, observed, self.baseline)
        returns = batch.returns((return_mean, return_std)) if self._has_critic else observed
        logs = self._accumulate_gradient(batch, th.as_tensor(returns, device=self.device), return_mean, return_std)
        grad_norm = self._clip_and_step()

        # The step went through: only now commit the state that depends on this batch.
        self._return_moments = moments
        self._n_updates += 1

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key in ("policy_loss", "entropy_loss", "value_loss", "carry_weight_mean", "baseline"):
            if key in logs:
                self.logger.record(f"train/{key}", logs[key])
        self.logger.record("train/grad_norm", grad_norm)
        self.logger.record("train/carried_steps", len(batch) - batch.n_fresh)
        if "values" in logs and returns.var() > 0:  # undefined (SB3 gives NaN) when every return is the same
            self.logger.record("train/explained_variance", explained_variance(logs["values"], returns))
        if hasattr(self.policy, "log_std"):
            std = th.exp(self.policy.log_std).clamp(min=getattr(self.policy, "min_std", 0.0))
            self.logger.record("train/std", std.mean().item())

    def _accumulate_gradient(self, batch: Batch, returns: th.Tensor, return_mean: float, return_std: float) -> dict[str, Any]:
        """
        The gradient of the REINFORCE loss on ``batch``, accumulated chunk by chunk into the parameters' ``.grad``
        (each chunk's loss weighted by its share of the batch, so the sum is the whole batch's mean loss), and what
        to log. Statistics over the whole batch (advantage normalisation) are taken before the first chunk.
        """
        chunk_size, carried, scale = self._chunk_size(), batch.carried, (return_mean, return_std)
        advantages = self._batch_advantages(batch, returns, scale, chunk_size)
        self.policy.optimizer.zero_grad()
        logs: dict[str, Any] = {}
        seen: dict[str, list[th.Tensor]] = {"values": [], "carry_weights": []}
        for index, steps in batch.chunks(chunk_size):
            chunk_advantages = None if advantages is None else advantages[index]
            loss, terms, outputs = self._loss(steps, returns[index], chunk_advantages, carried[index], scale)
            share = (index.stop - index.start) / len(batch)
            self._backward(loss if share == 1.0 else loss * share)
            for key, term in terms.items():
                logs[key] = logs.get(key, 0.0) + term * share
            for key, output in outputs.items():
                seen[key].append(output)

        if seen["carry_weights"]:
            logs["carry_weight_mean"] = th.cat(seen["carry_weights"]).mean().item()
        if seen["values"]:
            logs["values"] = th.cat(seen["values"]).numpy()
        if self.baseline == "mean":
            logs["baseline"] = baseline_values(self.baseline, None, *scale)
        return logs

    def _batch_advantages(
        self, batch: Batch, returns: th.Tensor, scale: tuple[float, float], chunk_size: int
    ) -> th.Tensor | None:
        """
        The whole batch's advantages where they can be computed before its chunks: without a critic, and with one when
        they are standardised over a batch of several chunks (its output for every step is computed first). ``None``:
        each chunk computes its own, from the critic's output of its forward pass.
        """
        if not self._has_critic:
            return compute_advantages(returns, baseline_values(self.baseline, None, *scale), self.normalize_advantage)
        if not self.normalize_advantage or len(batch) <= chunk_size:
            return None
        with th.no_grad():
            critic = [self.policy.predict_values(to_torch(steps, self.action_space, self.device)[0]).flatten()
                      for _, steps in batch.chunks(chunk_size)]  # fmt: skip
        return compute_advantages(returns, baseline_values(self.baseline, th.cat(critic), *scale), normalize=True)

    def _loss(
        self,
        steps: Steps,
        returns: th.Tensor,
        advantages: th.Tensor | None,
        carried: np.ndarray,
        scale: tuple[float, float],
    ) -> tuple[th.Tensor, dict[str, float], dict[str, th.Tensor]]:
        """
        The REINFORCE loss of one chunk of the batch (see the class docstring), its terms as numbers, and the outputs
        the logs need (the critic's values, the importance weights of carried steps).

        :param advantages: The chunk's advantages, or ``None`` to compute them from the returns and the baseline.
        """
        observations, actions, behaviour_log_prob = to_torch(steps, self.action_space, self.device)
        values = None
        if self._has_critic:
            values, log_prob, entropy = self.policy.evaluate_actions(observations, actions)
            values = values.flatten()
        else:
            log_prob, entropy = self.policy.evaluate_actor(observations, actions)
        weights = carried_step_weights(log_prob, behaviour_log_prob, carried, self.carry_ratio_clip)
        baseline = baseline_values(self.baseline, values, *scale)
        if advantages is None:
            advantages = compute_advantages(returns, baseline, self.normalize_advantage)

        policy_loss = policy_gradient_loss(log_prob, advantages, weights)
        entropy_loss = -th.mean(entropy) if entropy is not None else th.mean(log_prob)
        loss = policy_loss + self.ent_coef * entropy_loss
        terms = {"policy_loss": policy_loss.item(), "entropy_loss": entropy_loss.item()}
        outputs = {}
        if values is not None:
            return_mean, return_std = scale
            value_loss = F.mse_loss(values, (returns - return_mean) / return_std)
            loss = loss + self.vf_coef * value_loss
            terms["value_loss"] = value_loss.item()
            outputs["values"] = th.as_tensor(baseline).cpu()
        if weights is not None:
            outputs["carry_weights"] = weights[th.as_tensor(carried, device=weights.device)].cpu()
        return loss, terms, outputs

    def _chunk_size(self) -> int:
        """``update_chunk_size``, or what ``None`` stands for with this observation space (see the constructor)."""
        if self.update_chunk_size is not None:
            return self.update_chunk_size
        shapes = get_obs_shape(self.observation_space)
        floats = sum(int(np.prod(shape)) for shape in (shapes.values() if isinstance(shapes, dict) else [shapes]))
        return max(1, min(UPDATE_CHUNK_STEPS, UPDATE_CHUNK_BYTES // (4 * max(floats, 1))))

    def _backward(self, loss: th.Tensor) -> None:
        """Add ``loss``'s gradient to the parameters'; raise (and clear them) first if the loss is not finite."""
        if not th.isfinite(loss):
            self.policy.optimizer.zero_grad()
            raise self._diverged(f"The REINFORCE loss is {loss.item()}")
        loss.backward()

    def _clip_and_step(self) -> float:
        """
        Clip the accumulated gradient's global norm and step; raise before the step if it is not finite. A norm that
        overflows float32 while every entry of the gradient is finite (returns beyond about 1e19) is taken in float64.
        """
        parameters = [parameter for parameter in self.policy.parameters() if parameter.grad is not None]
        gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
        total_norm = th.nn.utils.get_total_norm(gradients)  # what clip_grad_norm_ computes
        if not th.isfinite(total_norm) and all(bool(th.isfinite(gradient).all()) for gradient in gradients):
            total_norm = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(g, dtype=th.float64) for g in gradients]))
        grad_norm = float(total_norm)
        if not math.isfinite(grad_norm):
            self.policy.optimizer.zero_grad()
            raise self._diverged(f"The gradient norm is {grad_norm}")
        max_norm = math.inf if self.max_grad_norm is None else self.max_grad_norm
        th.nn.utils.clip_grads_with_norm_(parameters, max_norm, total_norm)
        self.policy.optimizer.step()
        return grad_norm

    def _diverged(self, what: str) -> NonFiniteError:
        return checks.diverged(what, self.policy.optimizer.param_groups[0]["lr"])

    def _warn_if_nothing_learns(self) -> None:
        """Warn once per ``learn`` call when it has collected several rollouts without one update: no episode ends."""
        self._rollouts_without_update += 1
        if self._rollouts_without_update != ROLLOUTS_BEFORE_WARNING or self._n_updates > self._updates_at_learn_start:
            return
        steps = self._rollouts_without_update * self.n_steps * self.n_envs
        warnings.warn(
            f"REINFORCE has collected {self._rollouts_without_update} rollouts ({steps} steps) in this learn() call "
            f"without an update: no episode has ended, so no step has a Monte Carlo return "
            f"(incomplete_episodes={self.incomplete_episodes!r}). If the env's episodes never end, give them a time "
            "limit (gymnasium.wrappers.TimeLimit, or max_episode_steps in gymnasium.make), use baseline='value' with "
            "incomplete_episodes='bootstrap', or a larger n_steps.",
            UserWarning,
            stacklevel=2,
        )

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        Save the model as SB3 does, with the held-over steps, atomically for a path: the new file is written beside
        the old one and renamed onto it, so a crash during the save leaves the previous save intact (the folder needs
        room for both while it runs), and the next save removes what the crashed one left. A symlink keeps pointing to
        the file it names, and the file keeps its permissions.
        """
        save_atomically(super().save, path, exclude, include)

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfREINFORCE],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        trusted: bool = False,
        **kwargs: Any,
    ) -> SelfREINFORCE:
        """
        Load a REINFORCE model saved with ``save()``, as SB3 does, but without running code from the file: the
        objects its data stores as pickles are built from an allow-list of types (spaces, schedules, the classes in
        ``policy_kwargs``; see :mod:`sb3_reinforce.reinforce.save_file`) and the weights are read as tensors only. A
        file that needs anything else raises :class:`~sb3_reinforce.reinforce.save_file.CodeInFileError` (a
        ``ValueError``) naming the entry, before any of it runs. kwargs and ``custom_objects`` are checked as the
        constructor checks its arguments.

        A missing file raises ``FileNotFoundError``; a file that is not a complete REINFORCE save (damaged, truncated,
        another algorithm's, a ``data`` entry over 64 MiB unpacked) or whose weights are not finite or do not fit its
        network, one ``ValueError`` saying which part.

        :param trusted: Load as SB3 does, unpickling whatever the file holds, which runs any code it names: only for
            files you made or otherwise trust (a custom policy class or a schedule function stored by value).
        """
        data = check_save_file(path)
        # Only kwargs: custom_objects replace saved entries and ignore others (rl_zoo3's enjoy passes clip_range).
        checks.refuse_not_reinforce_arguments(kwargs, f"{cls.__name__}.load()")
        objects = dict(custom_objects or {})
        if not trusted:
            objects = {**safe_data_objects(path, data, objects), **objects}
        spaces = f" (observation space {objects.get('observation_space')}, action space {objects.get('action_space')})"
        with load_errors(path, spaces if not trusted else ""):
            model = super().load(path, env, device, objects, print_system_info, force_reset, **kwargs)
        check_loaded_state(path, model.policy, model._return_moments)
        return model

    def learn(
        self: SelfREINFORCE,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "REINFORCE",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfREINFORCE:
        """
        Train, as SB3's ``learn``. A rollout that is abandoned (a callback returns False, or collecting or the update
        raises) drops the held-over steps: the envs moved on without recording the rest of their episodes.
        """
        try:
            return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
        except BaseException:
            self._drop_held_over_steps()
            raise
