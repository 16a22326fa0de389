"""
REINFORCE in the RL Baselines3 Zoo (rl_zoo3): ``python -m sb3_reinforce.zoo train --algo reinforce --env CartPole-v1``.

rl_zoo3 has no plugin entry point: :func:`register` adds ``reinforce`` to its algorithm table and to its Optuna
sampler and converter tables at run time, and :func:`main` then hands the command line to rl_zoo3 unchanged, except
that ``train --algo reinforce`` without ``-conf`` reads the ``reinforce.yml`` shipped with this package.
Every other algorithm (``--algo a2c``, ``ppo``, ...) works through the same entry, as in rl_zoo3.

Two additions for searches shared by several workers (see :mod:`sb3_reinforce.zoo.storage`): ``train -optimize``
with an RDB ``--storage`` URL turns on Optuna's heartbeat (``--heartbeat-interval``, ``--grace-period``), so a dead
worker's trial is failed and retried, and ``best`` writes a study's best trial as a ``reinforce.yml`` entry.
"""

import importlib
import importlib.resources
import os
import runpy
import sys
from contextlib import AbstractContextManager, nullcontext

from sb3_reinforce.reinforce import REINFORCE

ALGO_NAME = "reinforce"
USAGE = """usage: sb3-reinforce-zoo COMMAND [rl_zoo3 arguments]

Commands (rl_zoo3's, with REINFORCE registered as --algo reinforce):
  train            train an agent (-optimize to search hyper-parameters)
  enjoy            run a trained agent
  record_video     record a video of a trained agent
  record_training  record videos of the checkpoints of a training
  plot_train       plot training curves
  plot_from_file   plot results saved by all_plots
  all_plots        plot evaluations of several algorithms
  best             write the best trial of a search as a reinforce.yml entry (sb3-reinforce-zoo best -h)

train -optimize with an RDB --storage (postgresql://..., sqlite:///...) turns on Optuna's heartbeat, so that the
trial of a worker that died is failed and run again by another worker:
  --heartbeat-interval SECONDS   between two heartbeats of a running trial (default {interval}; 0: no heartbeat)
  --grace-period SECONDS         silence after which a trial is failed and retried (default {grace})

The hyper-parameters of REINFORCE are read from the packaged reinforce.yml unless -conf/--conf-file is given:
{config}
"""


def default_config_path() -> str:
    """Path of the ``reinforce.yml`` installed with the package (a copy of the repository's ``zoo_configs/``)."""
    return str(importlib.resources.files("sb3_reinforce.zoo") / "configs" / "reinforce.yml")


def register() -> None:
    """Add REINFORCE to rl_zoo3's algorithm, sampler and converter tables (idempotent)."""
    from rl_zoo3 import hyperparams_opt, utils

    from sb3_reinforce.zoo.hyperparams_opt import convert_reinforce_params, sample_reinforce_params

    utils.ALGOS[ALGO_NAME] = REINFORCE
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_reinforce_params
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_reinforce_params


def _abbreviated(arg: str, option: str, shortest: str) -> bool:
    """Whether ``arg`` (``--name`` or ``--name=value``) is ``option`` as argparse reads it: the whole name, or an
    unambiguous prefix of it (rl_zoo3's parser accepts abbreviations), at least as long as ``shortest``."""
    name = arg.split("=", 1)[0]
    return len(name) >= len(shortest) and option.startswith(name)


def _option(args: list[str], option: str, shortest: str | None = None, alias: str | None = None) -> str | None:
    """
    The value of the last ``option`` in ``args``, as rl_zoo3's parser reads it: ``--name value``, ``--name=value``,
    an abbreviation at least as long as ``shortest`` (``--conf`` for ``--conf-file``), or ``alias value``.
    """
    value = None
    for i, arg in enumerate(args):
        if arg == alias or _abbreviated(arg, option, shortest or option):
            if "=" in arg and arg != alias:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(args):
                value = args[i + 1]
    return value


def _prepare_train(args: list[str]) -> list[str]:
    """
    ``train`` arguments for rl_zoo3: the packaged config for REINFORCE when no ``-conf`` is given, and a clear error
    for a hyper-parameter file that is not valid YAML (rl_zoo3 would fail deep inside its start-up).
    """
    conf = _option(args, "--conf-file", "--conf", alias="-conf")
    if conf is None and _option(args, "--algo", "--alg") == ALGO_NAME:
        conf = default_config_path()
        args = [*args, "--conf-file", conf]
    if conf is not None and conf.endswith((".yml", ".yaml")) and os.path.isfile(conf):
        import yaml

        try:
            with open(conf) as file:
                content = yaml.safe_load(file)
        except yaml.YAMLError as error:
            raise SystemExit(f"Malformed hyper-parameter file {conf}: {error}") from error
        if not isinstance(content, dict):
            raise SystemExit(f"Malformed hyper-parameter file {conf}: expected a mapping of env ids to hyper-parameters")
    return args


def _heartbeat_options(args: list[str]) -> tuple[list[str], AbstractContextManager[None]]:
    """
    Take ``--heartbeat-interval`` / ``--grace-period`` out of ``train``'s arguments (rl_zoo3 does not know them) and
    return the rest with what to run the training in: :func:`~sb3_reinforce.zoo.storage.rdb_patches`, which gives
    every search on an RDB storage a heartbeat (by default; ``--heartbeat-interval 0``: none) and does nothing to a
    training that is not a search. The options are checked against the command line: given without a search, or
    with a JournalFile storage, they are an error.
    """
    import argparse

    from sb3_reinforce.zoo import storage as storages

    parser = argparse.ArgumentParser(prog="sb3-reinforce-zoo train", allow_abbrev=False, add_help=False)
    parser.add_argument("--heartbeat-interval", type=int)
    parser.add_argument("--grace-period", type=int)
    options, rest = parser.parse_known_args(args)
    given = options.heartbeat_interval is not None or options.grace_period is not None
    # rl_zoo3 also has --optimization-log-path and --study-name: --optimize and --sto are the shortest unambiguous.
    optimize = any(arg == "-optimize" or _abbreviated(arg, "--optimize-hyperparameters", "--optimize") for arg in rest)
    storage = _option(rest, "--storage", "--sto")
    if given and (not optimize or storage is None):
        raise SystemExit("--heartbeat-interval / --grace-period apply to a search: train -optimize --storage URL")
    if optimize and storage is not None and storages.is_journal(storage):
        if given:
            raise SystemExit(
                f"--heartbeat-interval / --grace-period need an RDB storage (postgresql://..., sqlite:///...): "
                f"Optuna's JournalFile storage {storage} has no heartbeat"
            )
        print(
            f"note: Optuna's JournalFile storage ({storage}) has no heartbeat: the trial of a worker that dies stays RUNNING; "
            "use an RDB storage (PostgreSQL) for a search that survives dead workers",
            file=sys.stderr,
        )
    if options.heartbeat_interval == 0:
        if options.grace_period is not None:
            raise SystemExit("--grace-period needs a heartbeat: --heartbeat-interval > 0")
        return rest, storages.rdb_patches(None)
    interval = storages.DEFAULT_HEARTBEAT_INTERVAL if options.heartbeat_interval is None else options.heartbeat_interval
    if options.grace_period is not None:
        grace_period = options.grace_period
    elif options.heartbeat_interval is None:
        grace_period = storages.DEFAULT_GRACE_PERIOD
    else:
        grace_period = 3 * interval
    try:
        heartbeat = storages.Heartbeat(interval=interval, grace_period=grace_period)
    except ValueError as error:
        raise SystemExit(f"--heartbeat-interval / --grace-period: {error}") from error
    return rest, storages.rdb_patches(heartbeat)


# command -> (module, function); ``None`` runs the module as a script. Imported only when used: the plotting
# commands need rl_zoo3's plotting dependencies (seaborn, ...), which training does not.
COMMANDS: dict[str, tuple[str, str | None]] = {
    "train": ("rl_zoo3.train", "train"),
    "enjoy": ("rl_zoo3.enjoy", "enjoy"),
    "record_video": ("rl_zoo3.record_video", None),
    "record_training": ("rl_zoo3.record_training", None),
    "plot_train": ("rl_zoo3.plots.plot_train", "plot_train"),
    "plot_from_file": ("rl_zoo3.plots.plot_from_file", "plot_from_file"),
    "all_plots": ("rl_zoo3.plots.all_plots", "all_plots"),
}


def _run_command(command: str) -> None:
    module_name, function = COMMANDS[command]
    try:
        if function is None:
            runpy.run_module(module_name, run_name="__main__", alter_sys=True)
        else:
            getattr(importlib.import_module(module_name), function)()
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("sb3_reinforce"):
            raise SystemExit(
                f"{command} needs {error.name}, which is not installed: pip install 'sb3-reinforce[zoo]' "
                f"(plots also need rl_zoo3's plotting extras, e.g. pip install seaborn)"
            ) from error
        raise


def main(argv: list[str] | None = None) -> None:
    """
    Entry point of ``sb3-reinforce-zoo`` and ``python -m sb3_reinforce.zoo``.

    :param argv: The arguments (default: ``sys.argv[1:]``): a command, then rl_zoo3's arguments for it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        from sb3_reinforce.zoo.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL

        print(USAGE.format(config=default_config_path(), interval=DEFAULT_HEARTBEAT_INTERVAL, grace=DEFAULT_GRACE_PERIOD))
        return
    command, args = argv[0], argv[1:]
    if command not in (*COMMANDS, "best"):
        # A usage error: exit status 2, as argparse gives.
        print(
            f"sb3-reinforce-zoo: unknown command {command!r}; choose one of: {', '.join([*COMMANDS, 'best'])}", file=sys.stderr
        )
        raise SystemExit(2)
    try:
        register()
    except ImportError as error:
        raise SystemExit(f"The RL Zoo is not installed ({error}): pip install 'sb3-reinforce[zoo]'") from error
    if command == "best":
        from sb3_reinforce.zoo import best

        best.main(args, default_config_path())
        return
    context: AbstractContextManager[None] = nullcontext()
    if command == "train":
        args, context = _heartbeat_options(_prepare_train(args))
    sys.argv = [f"sb3-reinforce-zoo {command}", *args]
    with context:
        _run_command(command)
