"""Reading the YAML configuration files (``--config.file``, ``--web.config.file``) safely.

Both files are read by the same bounded loader: at most :data:`MAX_BYTES`,
nested at most :data:`MAX_DEPTH` levels (PyYAML's composer recurses, so a deep
file would otherwise end in a ``RecursionError``), no duplicate keys (PyYAML
keeps the last one silently, as the toolkit's strict Go decoder does not), and
no aliases (an alias bomb expands to gigabytes once walked). Unknown keys are
found at any depth by :func:`unknown_key`, with the key probably meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import yaml

#: Largest configuration file read, in bytes: 10,000 accounts take about 1.2 MB.
MAX_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings and lists accepted.
MAX_DEPTH = 32

#: A schema: each known key maps to the schema of its value. ``None`` is a
#: scalar or anything not checked further; ``[schema]`` a list of such values.
Schema = Mapping[str, Any]


class YAMLFileError(ValueError):
    """The file is not a YAML mapping we accept; ``str()`` is one line, without values."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: let the constructor report it
            continue
        if duplicate:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {_masked_key(key)} (line {mark.line + 1})", mark)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _masked_key(key: Any) -> str:
    text = str(key)
    return repr(text) if len(text) <= 40 else repr(text[:12] + "…")


def _check_structure(text: bytes) -> None:
    """Refuse deep nesting and aliases from the event stream, before anything recurses."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YAMLFileError(f"nested deeper than {MAX_DEPTH} levels"
                                    + _at_line(event.start_mark))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            raise YAMLFileError("YAML aliases (*name) are not supported"
                                + _at_line(event.start_mark))


def _at_line(mark: Any) -> str:
    return f" at line {mark.line + 1}" if mark is not None else ""


def load_mapping(text: bytes) -> dict[str, Any]:
    """Parse *text* as a YAML mapping (empty text is ``{}``); raises :class:`YAMLFileError`."""
    if len(text) > MAX_BYTES:
        raise YAMLFileError(f"larger than {MAX_BYTES // 1024} KiB")
    try:
        _check_structure(text)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        # Only the problem and its position: the snippet YAML quotes could hold a secret.
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YAMLFileError(f"invalid YAML{where}: {problem}") from None
    except RecursionError:  # defence in depth: the event check should come first
        raise YAMLFileError(f"nested deeper than {MAX_DEPTH} levels") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YAMLFileError("must be a YAML mapping")
    return data


def unknown_key(data: Any, schema: Schema, path: str = "") -> tuple[str, str] | None:
    """The first key of *data* not in *schema*, at any depth: its path and the problem.

    ``("cache.tll", "unknown setting; did you mean cache.ttl?")``, or None.
    """
    if not isinstance(data, Mapping):
        return None
    for key, value in data.items():
        name = str(key)
        where = f"{path}.{name}" if path else name
        if name not in schema:
            close = difflib.get_close_matches(name, [str(k) for k in schema], n=1, cutoff=0.6)
            hint = f"; did you mean {path + '.' if path else ''}{close[0]}?" if close else ""
            return where, f"unknown setting{hint}"
        sub = schema[name]
        if isinstance(sub, list) and isinstance(value, list):
            for index, item in enumerate(value):
                found = unknown_key(item, sub[0], f"{where}[{index}]")
                if found:
                    return found
        elif isinstance(sub, Mapping):
            found = unknown_key(value, sub, where)
            if found:
                return found
    return None
