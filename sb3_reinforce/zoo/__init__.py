"""
REINFORCE in the RL Baselines3 Zoo (rl_zoo3): ``python -m sb3_reinforce.zoo train --algo reinforce --env CartPole-v1``.

rl_zoo3 has no plugin entry point: :func:`register` adds ``reinforce`` to its algorithm table and to its Optuna
sampler and converter tables at run time. The command line (``train --algo reinforce`` reads the packaged
``reinforce.yml`` without ``-conf``; every other algorithm works through the same entry, as in rl_zoo3) is
:mod:`sb3_reinforce.zoo.cli`; searches shared by several workers :mod:`sb3_reinforce.zoo.storage`; ``best``, which
writes a study's best trial as a ``reinforce.yml`` entry, :mod:`sb3_reinforce.zoo.best`.
"""

from pathlib import Path

from sb3_reinforce.reinforce import REINFORCE

ALGO_NAME = "reinforce"


def default_config_path() -> str:
    """
    Path of the ``reinforce.yml`` that ``train --algo reinforce`` reads without ``-conf``: the copy installed inside the
    package (the wheel maps the repository's ``zoo_configs/reinforce.yml`` there: ``force-include`` in
    ``pyproject.toml``), or in a source checkout (an editable install) ``zoo_configs/reinforce.yml`` itself.
    """
    packaged = Path(__file__).parent / "configs" / "reinforce.yml"
    return str(packaged if packaged.is_file() else Path(__file__).resolve().parents[2] / "zoo_configs" / "reinforce.yml")


def register() -> None:
    """Add REINFORCE to rl_zoo3's algorithm, sampler and converter tables (idempotent)."""
    from rl_zoo3 import hyperparams_opt, utils

    from sb3_reinforce.zoo.hyperparams_opt import convert_reinforce_params, sample_reinforce_params

    utils.ALGOS[ALGO_NAME] = REINFORCE
    hyperparams_opt.HYPERPARAMS_SAMPLER[ALGO_NAME] = sample_reinforce_params
    hyperparams_opt.HYPERPARAMS_CONVERTER[ALGO_NAME] = convert_reinforce_params


def main(argv: list[str] | None = None) -> None:
    """The ``sb3-reinforce-zoo`` command: see :func:`sb3_reinforce.zoo.cli.main`."""
    from sb3_reinforce.zoo.cli import main as cli_main

    cli_main(argv)
