"""The reader of one search-space document: :class:`_Reader` checks mappings, keys and
searchable values (:class:`~search.space.values.Fixed`, ``Choice``, ``Range``) and raises
:class:`~search.space.values.SpaceError` naming the source and the key path."""

from __future__ import annotations

import difflib
from typing import Any, NoReturn

from search.space.checks import MAX_GRID_POINTS, Check, _boolean, _got, _integer, _key_text, _number
from search.space.values import Choice, Fixed, Param, Range, SpaceError, _on_grid


class _Reader:
    """Validates one document; every error names ``source`` and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> NoReturn:
        raise SpaceError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    @staticmethod
    def join(path: str, key: Any) -> str:
        key = _key_text(key)
        return f"{path}.{key}" if path else key

    def check(self, value: Any, path: str, check: Check) -> Any:
        try:
            return check(value)
        except ValueError as e:
            self.fail(path, str(e))

    def mapping(self, raw: Any, path: str, known: tuple[str, ...] | dict) -> dict:
        known = tuple(known)
        if not isinstance(raw, dict):
            self.fail(path, f"must be a mapping with keys {', '.join(known)}, {_got(raw)}")
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(self.join(path, key), f"unknown key (known keys: {', '.join(known)}){hint}")
        return raw

    def section(self, top: dict, name: str, known: tuple[str, ...] | dict) -> dict:
        raw = top.get(name)
        return self.mapping({} if raw is None else raw, name, known)  # an empty section is no section

    def get(self, section: dict, path: str, key: str, check: Check, default: Any) -> Any:
        return self.check(section[key], self.join(path, key), check) if key in section else default

    def param(self, raw: Any, path: str, check: Check, ranges: bool) -> Param:
        if isinstance(raw, list):
            if not raw:
                self.fail(path, "an empty list has nothing to choose from; give at least one choice")
            choices: list = []
            for i, value in enumerate(raw):
                value = self.check(value, f"{path}[{i}]", check)
                if value in choices:
                    self.fail(f"{path}[{i}]", f"choices must be distinct, got {value!r} twice")
                choices.append(value)
            return Choice(path, tuple(choices))
        if isinstance(raw, dict):
            if not ranges:
                self.fail(path, f"must be a value or a list of choices, not a range, {_got(raw)}")
            return self.range(raw, path, check)
        return Fixed(path, self.check(raw, path, check))

    def range(self, raw: dict, path: str, check: Check) -> Range:
        self.mapping(raw, path, ("low", "high", "log", "step"))
        missing = [key for key in ("low", "high") if key not in raw]
        if missing:
            self.fail(path, f"a range needs low and high, missing {', '.join(missing)}")
        low = self.check(raw["low"], f"{path}.low", check)
        high = self.check(raw["high"], f"{path}.high", check)
        is_int = isinstance(low, int)
        log = self.get(raw, path, "log", _boolean, False)
        step = self.get(raw, path, "step", _integer(1) if is_int else _number(0, low_open=True), None)
        if low > high:
            self.fail(path, f"low must be <= high, got low={low!r}, high={high!r}")
        if log and low <= 0:
            self.fail(path, f"a log range needs low > 0, got low={low!r}")
        if log and step is not None:
            self.fail(path, f"log and step cannot be used together, got log=true, step={step!r}")
        if step is not None and (high - low) / step > MAX_GRID_POINTS:
            self.fail(path, f"step is too fine: (high - low) / step must be at most {MAX_GRID_POINTS} points, "
                            f"got low={low!r}, high={high!r}, step={step!r}")
        if step is not None and not _on_grid(high, low, step):
            self.fail(path, f"high - low must be a multiple of step, got low={low!r}, high={high!r}, step={step!r}")
        return Range(path, low, high, log, step)

    def params(self, top: dict, name: str, table: dict[str, tuple[Check, bool]]) -> dict[str, Param]:
        section = self.section(top, name, table)
        return {key: self.param(section[key], f"{name}.{key}", check, ranges)
                for key, (check, ranges) in table.items() if key in section}
