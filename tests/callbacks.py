"""Callbacks the tests use to stop rollouts and to read what each update logged."""

from stable_baselines3.common.callbacks import BaseCallback


class StopAfter(BaseCallback):
    """Abandons the rollout at its ``n``-th step (the env has taken that step)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def _on_step(self) -> bool:
        return self.n_calls < self.n


class TrainLog(BaseCallback):
    """The ``train/*`` values of every update, read when the next rollout starts, and those of the last update."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[dict[str, float]] = []
        self.seen = 0

    def _read(self) -> None:
        if self.model._n_updates > self.seen:
            self.seen = self.model._n_updates
            self.updates.append({k: v for k, v in self.logger.name_to_value.items() if k.startswith("train/")})

    def _on_rollout_start(self) -> None:
        self._read()

    def _on_training_end(self) -> None:
        self._read()

    def _on_step(self) -> bool:
        return True
