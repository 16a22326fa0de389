"""
Warm starts of the searches at the full 1M-step budget: create the study as rl_zoo3 would (maximise) and enqueue
starting points; TPE samples every later trial.

- ``LunarLander-v3`` (study ``reinforce-LunarLander-v3-1M`` in ``lunarlander_1m.log``): the best configurations of
  the 300k-step search (``lunarlander.log``, trials 14 and 28) with a linearly decaying learning rate, trial 14 also
  with the value baseline, and a textbook REINFORCE-with-critic configuration (``TEXTBOOK``).
- ``LunarLanderContinuous-v3`` (study ``reinforce-LunarLanderContinuous-v3-1M`` in
  ``lunarlandercontinuous_1m.log``): ``TEXTBOOK``, the configuration that won the LunarLander-v3 search.
- MuJoCo ``HalfCheetah-v4``, ``Hopper-v4``, ``Walker2d-v4``, ``Swimmer-v4``, ``Ant-v4`` (study ``reinforce-ENV-1M`` in
  ``mujoco_ENV.log``): whole 1000-step episodes in every rollout (``n_steps`` 1024 x 8 envs), the configuration
  that learnt HalfCheetah in the issue's second probe (lr 3e-3), and the same with a decaying 1e-3; for the envs
  after HalfCheetah, first the two best trials of its search (34 and 19); after Hopper, before those, Hopper's two best
  (15 and 11); for Swimmer, before all, Hopper's two with ``gamma`` 0.9999 (rl_zoo3's A2C and PPO value there).
- On a Box action space every point starts from SB3's initial action noise (``log_std_init`` 0, what those searches
  ran with before the sampler searched it).
- ``--resume`` enqueues into a study that already has trials: for ``Ant-v4``, its best trial (7) with
  ``log_std_init`` -2, the setting that made every seed tried move (the searches page, Ant-v4); for ``Walker2d-v4``,
  the HalfCheetah entry with ``gamma`` 0.99 and advantage normalisation, with ``ent_coef`` 0.003 and with its own
  (the two settings that walked on some seeds, the searches page, Walker2d-v4).
- ``Acrobot-v1`` (study ``reinforce-Acrobot-v1-400k`` in ``acrobot.log``, 400k steps, 8 envs): the shipped entry
  (REINFORCE's defaults), the same with a decaying rate, and 128-step rollouts with a decaying 2e-3 (the three settings
  the searches page measured by hand before this search).

    python benchmarks/searches/enqueue.py LunarLander-v3   # once, before the search command (README.md)
    python benchmarks/searches/enqueue.py Ant-v4 --resume  # once, before resuming the Ant-v4 search
    python benchmarks/searches/enqueue.py Walker2d-v4 --resume
"""

import argparse
from pathlib import Path
from typing import Any

import optuna

from sb3_reinforce.zoo.storage import open_storage

HERE = Path(__file__).resolve().parent
TEXTBOOK: dict[str, Any] = {
    "one_minus_gamma": 0.01,
    "learning_rate": 1e-3,
    "lr_schedule": "linear",
    "n_steps": 256,
    "baseline": "value",
    "normalize_advantage": True,
    "ent_coef": 1e-5,
    "max_grad_norm": 0.5,
    "net_arch": "medium",
    "activation_fn": "relu",
    "incomplete_episodes": "carry",
}
MUJOCO = ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Swimmer-v4", "Ant-v4")
MUJOCO += ("Humanoid-v4", "Reacher-v4", "InvertedPendulum-v4", "InvertedDoublePendulum-v4")  # Tianshou's other four
BOX_ACTIONS = (*MUJOCO, "LunarLanderContinuous-v3")  # the sampler searches log_std_init for these
STUDIES = {
    "LunarLander-v3": "lunarlander_1m.log",
    "LunarLanderContinuous-v3": "lunarlandercontinuous_1m.log",
    **{env: f"mujoco_{env.split('-')[0].lower()}.log" for env in MUJOCO},
    "Acrobot-v1": "acrobot.log",
}
BUDGETS = {"Acrobot-v1": "400k"}  # the study name's budget suffix; every other study is a 1M-step one
DEFAULTS: dict[str, Any] = {  # REINFORCE(...)'s defaults as sampled values (ent_coef at the sampler's lower bound)
    **TEXTBOOK,
    "learning_rate": 1e-3,
    "lr_schedule": "constant",
    "n_steps": 512,
    "normalize_advantage": False,
    "ent_coef": 1e-8,
    "net_arch": "small",
    "activation_fn": "tanh",
}
WHOLE_EPISODES: dict[str, Any] = {**TEXTBOOK, "n_steps": 1024, "learning_rate": 3e-3, "lr_schedule": "constant"}


def study_name(env: str) -> str:
    return f"reinforce-{env}-{BUDGETS.get(env, '1M')}"


def starting_points(env: str) -> list[dict[str, Any]]:
    points = _starting_points(env)
    if env in BOX_ACTIONS:
        return [{"log_std_init": 0.0, **point} for point in points]
    return points


def load_search(env: str) -> optuna.Study:
    """The env's search, as its journal in this folder holds it."""
    return optuna.load_study(study_name=study_name(env), storage=open_storage(str(HERE / STUDIES[env])))


def resume_points(env: str) -> list[dict[str, Any]]:
    """Points to enqueue into the env's study when it already has trials (``--resume``)."""
    if env == "Ant-v4":
        return [{**load_search(env).trials[7].params, "log_std_init": -2.0}]
    if env == "Walker2d-v4":  # away from the standing optimum: the HalfCheetah entry's shape with gamma 0.99
        # the three changes the HalfCheetah entry made to its trial 34 (zoo_configs/reinforce.yml), as sampled values
        shipped = {"learning_rate": 2e-3, "lr_schedule": "linear", "incomplete_episodes": "bootstrap", "log_std_init": -1.0}
        trial_34 = load_search("HalfCheetah-v4").trials[34].params
        walking = {**trial_34, **shipped, "one_minus_gamma": 0.01, "normalize_advantage": True}
        return [{**walking, "ent_coef": 0.003}, walking]
    raise SystemExit(f"no resume points for {env}: only Ant-v4 and Walker2d-v4 have them")


def _starting_points(env: str) -> list[dict[str, Any]]:
    if env == "Acrobot-v1":
        decaying = {**DEFAULTS, "lr_schedule": "linear"}
        return [DEFAULTS, decaying, {**decaying, "n_steps": 128, "learning_rate": 2e-3}]
    if env == "LunarLanderContinuous-v3":
        return [TEXTBOOK]
    if env in MUJOCO:
        points = [WHOLE_EPISODES, {**WHOLE_EPISODES, "learning_rate": 1e-3, "lr_schedule": "linear"}]
        # Each later env starts from the best trials of the searches before it: HalfCheetah's 34 and 19, Hopper's 15 and 11.
        for earlier, best in (("HalfCheetah-v4", (34, 19)), ("Hopper-v4", (15, 11))):
            if MUJOCO.index(env) > MUJOCO.index(earlier):
                study = load_search(earlier)
                points = [*(study.trials[number].params for number in best), *points]
        if env == "Swimmer-v4":  # rl_zoo3's A2C and PPO use gamma 0.9999 there: the first points also with that horizon
            points = [{**point, "one_minus_gamma": 1e-4} for point in points[:2]] + points
        return points
    old = optuna.load_study(study_name="reinforce-LunarLander-v3", storage=open_storage(str(HERE / "lunarlander.log")))
    trial_14, trial_28 = old.trials[14].params, old.trials[28].params
    linear = {"lr_schedule": "linear"}
    return [{**trial_14, **linear}, {**trial_14, **linear, "baseline": "value"}, {**trial_28, **linear}, TEXTBOOK]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", choices=sorted(STUDIES))
    parser.add_argument("--resume", action="store_true", help="enqueue the resume points into a study with trials")
    args = parser.parse_args()
    env = args.env
    name = study_name(env)
    storage = open_storage(str(HERE / STUDIES[env]), create=True)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    if bool(study.trials) != args.resume:
        state = "already has trials (resume it with --resume)" if study.trials else "has no trials (run without --resume)"
        raise SystemExit(f"study {name!r} {state}; nothing enqueued")
    points = resume_points(env) if args.resume else starting_points(env)
    for params in points:
        study.enqueue_trial(params)
    print(f"{name}: enqueued {len(points)} trials")


if __name__ == "__main__":
    main()
