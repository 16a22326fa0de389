"""
Warm start of the LunarLander-v3 search at the full 1M-step budget (``reinforce-LunarLander-v3-1M`` in
``lunarlander_1m.log``): creates the study as rl_zoo3 would (maximise) and enqueues the best configurations of the
300k-step search (``lunarlander.log``, trials 14 and 28) with a linearly decaying learning rate, one of them also
with the value baseline, and a textbook REINFORCE-with-critic configuration. TPE samples every later trial.

    python benchmarks/searches/enqueue_lunarlander_1m.py   # once, before the search command (README.md)
"""

from pathlib import Path

import optuna

HERE = Path(__file__).resolve().parent
STORAGE = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(HERE / "lunarlander_1m.log")))
STUDY = "reinforce-LunarLander-v3-1M"


def main() -> None:
    old = optuna.load_study(
        study_name="reinforce-LunarLander-v3",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(HERE / "lunarlander.log"))),
    )
    trial_14, trial_28 = old.trials[14].params, old.trials[28].params
    textbook = {
        "one_minus_gamma": 0.01,
        "learning_rate": 1e-3,
        "n_steps": 256,
        "baseline": "value",
        "normalize_advantage": True,
        "ent_coef": 1e-5,
        "max_grad_norm": 0.5,
        "net_arch": "medium",
        "activation_fn": "relu",
        "incomplete_episodes": "carry",
    }
    study = optuna.create_study(study_name=STUDY, storage=STORAGE, direction="maximize", load_if_exists=True)
    if study.trials:
        raise SystemExit(f"study {STUDY!r} already has trials; nothing enqueued")
    for params in (trial_14, {**trial_14, "baseline": "value"}, trial_28, textbook):
        study.enqueue_trial({**params, "lr_schedule": "linear"})
    print(f"{STUDY}: enqueued 4 trials")


if __name__ == "__main__":
    main()
