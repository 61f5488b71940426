"""Reading a search-space file: its text (at most ``MAX_FILE_BYTES``) and its one YAML
document, read by :class:`_SpaceLoader`, a ``yaml.SafeLoader`` that also refuses what
``yaml.safe_load`` lets through. Every error is a :class:`~search.space.values.SpaceError`
that names the file and, where there is one, the key path."""

from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Any

import yaml

from search.space.reader import _Reader
from search.space.values import SpaceError

# The file is checked while it is read, before anything else
MAX_FILE_BYTES = 1 << 20  # paper.yaml, comments and all, is about 11 KB
MAX_DEPTH = 32  # levels of nesting (paper.yaml has 4), counting what aliases bring in
MAX_NODES = 10_000  # values, keys and list items (paper.yaml has about 200)


class _Refused(Exception):
    """What :class:`_SpaceLoader` refuses, at ``path`` (key path, "" for the document)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


class _SpaceLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (no python tags, so no code runs) that also refuses what
    safe_load lets through: nesting deeper than MAX_DEPTH (which would end in a RecursionError),
    counted through aliases, and an alias inside the node it names (an endless value); more
    than MAX_NODES nodes (slow to read, and no search space); a key written twice in one
    mapping (safe_load keeps the last silently); a scalar Python cannot make (a date like
    2024-13-45, an integer of thousands of digits). It knows the key path of the node it
    composes, so these errors name it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.labels: list[int | str | None] = []  # the key path of the node being composed, a label a level
        self.heights: dict[yaml.Node, int] = {}  # levels of nesting of each composed node
        self.nodes = 0

    def path(self) -> str:
        path = ""
        for label in self.labels:  # None: the document, or a key (its mapping's path names it)
            if isinstance(label, int):
                path += f"[{label}]"
            elif label is not None:
                path = _Reader.join(path, label)
        return path

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        label = index.value if isinstance(index, yaml.ScalarNode) else index  # a list item's index or a value's key
        self.labels.append(label if isinstance(label, (int, str)) else None)
        try:
            return self._compose(parent, index)
        finally:
            self.labels.pop()

    def _compose(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        at = _at(self.peek_event().start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(self.path(), f"more than {MAX_NODES} nodes (keys, values and list items; at {at}); "
                                        f"a search space has a few hundred")
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._check_alias(node, at)
            return node
        if len(self.labels) > MAX_DEPTH:
            raise _Refused(self.path(), f"nested deeper than {MAX_DEPTH} levels (at {at})")
        node = super().compose_node(parent, index)
        self.heights[node] = 1 + max((self.heights[child] for child in _children(node)), default=0)
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicate_keys(node)
        return node

    def _check_alias(self, node: yaml.Node, at: str) -> None:
        """An alias brings in a node composed before, with all its levels of nesting."""
        if node not in self.heights:  # still being composed: the alias is inside it
            raise _Refused(self.path(), f"the alias at {at} is inside the node it names, which makes an "
                                        f"endless value")
        if len(self.labels) - 1 + self.heights[node] > MAX_DEPTH:
            raise _Refused(self.path(), f"nested deeper than {MAX_DEPTH} levels through the alias at {at}")

    def _refuse_duplicate_keys(self, node: yaml.MappingNode) -> None:
        first: dict[Any, str] = {}  # where each key was first written
        for key_node, _ in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag.startswith("tag:yaml.org,2002:")
                    and key_node.tag not in _SPECIAL_KEYS):
                continue  # a merge (<<: *defaults) may restate keys; other keys the constructor checks
            key = self.construct_object(key_node)  # 1, 0x1 and 1.0 are one key
            if key in first:
                raise _Refused(_Reader.join(self.path(), key_node.value),
                               f"the key is written twice, at {first[key]} and at {_at(key_node.start_mark)}; "
                               f"write it once")
            first[key] = _at(key_node.start_mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:  # e.g. the date 2024-13-45, an int of 5000 digits
            reason = str(e).split("; ")[0]  # not Python's advice on sys.set_int_max_str_digits
            raise _Refused("", f"cannot read the value at {_at(node.start_mark)} ({reprlib.repr(node.value)}): "
                               f"{reason}") from None


_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")  # << and =


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _read_text(path: str | Path, source: str) -> str:
    """The file's text; a file over MAX_FILE_BYTES is refused before it is parsed."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # no more: a larger file is refused unread
            size = max(len(raw), os.fstat(f.fileno()).st_size)
        text = raw.decode("utf-8") if size <= MAX_FILE_BYTES else None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SpaceError(f"{source}: cannot read the search-space file: {reason}") from None
    if text is None:
        raise SpaceError(f"{source}: the file is {size} bytes; a search-space file may have at most "
                         f"{MAX_FILE_BYTES} (1 MiB)")
    return text


def _read_yaml(text: str, source: str) -> Any:
    """The document in ``text``, read with :class:`_SpaceLoader`; every error is a SpaceError."""
    loader = None
    try:
        loader = _SpaceLoader(text)  # reading starts here: it may refuse a character
        return loader.get_single_data()
    except _Refused as e:
        _Reader(source).fail(e.path, e.reason)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpaceError(f"{source}: YAML syntax error{where}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()

