"""The values a search-space file gives a key: :class:`Fixed` (a scalar, never an Optuna
parameter), :class:`Choice` (a list: a categorical parameter) and :class:`Range` (an int or
float range); and the two errors of the space, :class:`SpaceError` (a file breaks a rule) and
:class:`InvalidCandidate` (a sampled point cannot be built)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna


class SpaceError(ValueError):
    """A search-space file breaks a rule; the message names the file, the key path and the value."""


class InvalidCandidate(ValueError):
    """A sampled point that cannot be built (e.g. its feature map vanishes at this image size)."""



@dataclass(frozen=True)
class Fixed:
    """A value the file fixes: never an Optuna parameter."""

    key: str  # where it comes from, e.g. "training.weight_decay"
    value: Any

    def describe(self) -> str:
        return f"fixed at {self.value!r}"

    def admits(self, value: Any) -> bool:
        return value == self.value

    def values(self) -> list:
        return [self.value]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return self.value  # not a parameter: the trial is not asked


@dataclass(frozen=True)
class Choice:
    """A categorical parameter."""

    key: str
    choices: tuple

    def describe(self) -> str:
        return f"one of {list(self.choices)}"

    def admits(self, value: Any) -> bool:
        return value in self.choices

    def values(self) -> list:
        return list(self.choices)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))


@dataclass(frozen=True)
class Range:
    """An int range (int low/high) or a float range, optionally log-scaled or stepped."""

    key: str
    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int)

    def describe(self) -> str:
        extra = " (log)" if self.log else f" (step {self.step})" if self.step is not None else ""
        return f"range [{self.low}, {self.high}]{extra}"

    def admits(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.is_int else (int, float)):
            return False
        on_grid = self.step is None or _on_grid(value, self.low, self.step)
        return self.low <= value <= self.high and on_grid

    def suggest(self, trial: optuna.Trial, name: str) -> int | float:
        if self.is_int:
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


Param = Fixed | Choice | Range


def _on_grid(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return math.isfinite(k) and abs(k - round(k)) < 1e-8  # Optuna's own tolerance for stepped floats



def _smallest(param: Param) -> Any:
    return param.low if isinstance(param, Range) else min(param.values())


def _largest(param: Param) -> Any:
    return param.high if isinstance(param, Range) else max(param.values())
