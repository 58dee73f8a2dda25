"""A profile's TOML text edited with tomlkit so only the edited value's bytes change: set a key in
place or in its table, delete a key and the tables it empties, keep the file's line ends."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Sequence

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import InlineTable

from .errors import ConfigError, Problem
from .profiles import BOM_MESSAGE
from .safe_write import show_path


def parse_document(text: str, path: str) -> Any:
    """*text* as a tomlkit document; ConfigError naming *path* when it is not TOML."""
    if text.startswith("\ufeff"):
        raise ConfigError("%s %s." % (show_path(path), BOM_MESSAGE),
                          [Problem(path, (), BOM_MESSAGE)])
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigError("%s is not valid TOML (%s); fix it by hand or replace it with apply."
                          % (show_path(path), exc),
                          [Problem(path, (), "not valid TOML: %s" % exc)]) from None


def set_key(text: str, path: str, key: str, value: Any) -> str:
    """*text* with *key* set: in place where the key exists (a table, a super-table, a dotted key
    or an inline table), added to its table when that exists, else in a new table at the end."""
    doc = parse_document(text, path)
    parts = key.split(".")
    node = doc
    try:
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                if isinstance(node, InlineTable):
                    nested: Any = value
                    for p in reversed(parts[i + 1:]):
                        nested = {p: nested}
                    node[part] = _spaced(node, _item(nested))
                    return doc.as_string()
                return _append_table(doc.as_string(), parts[:-1], parts[-1], value)
            if not isinstance(child, Mapping):
                raise _edit_error(path, key, "%s is not a table" % ".".join(parts[:i + 1]))
            node = child
        old = node.get(parts[-1])
        if isinstance(old, Mapping) and not isinstance(old, InlineTable):
            raise _edit_error(path, key, "it is a table; set its keys, or unset it first")
        node[parts[-1]] = _spaced(node, _item(value)) if old is None else _item(value)
    except TOMLKitError as exc:
        raise _edit_error(path, key, str(exc)) from None
    return doc.as_string()


def _append_table(text: str, header: Sequence[str], leaf: str, value: Any) -> str:
    nl = "\r\n" if "\r\n" in text else "\n"
    if text and not text.endswith("\n"):
        text += nl
    if text.strip() and not text.endswith(nl + nl):
        text += nl
    name = ".".join(tomlkit.key(p).as_string() for p in header)
    return "%s[%s]%s%s = %s%s" % (text, name, nl, tomlkit.key(leaf).as_string(),
                                  _item(value).as_string(), nl)


def delete_key(doc: Any, parts: Sequence[str], path: str) -> bool:
    """Delete a key, then every table that leaves empty; False when the key is not there."""
    chain = [doc]
    for part in parts[:-1]:
        child = chain[-1].get(part)
        if not isinstance(child, Mapping):
            return False
        chain.append(child)
    if parts[-1] not in chain[-1]:
        return False
    try:
        del chain[-1][parts[-1]]
        for i in range(len(parts) - 1, 0, -1):
            if len(chain[i]):
                break
            del chain[i - 1][parts[i - 1]]
    except TOMLKitError as exc:
        raise _edit_error(path, ".".join(parts), str(exc)) from None
    return True


def finish_edit(before: str, after: str) -> str:
    """Line ends as the file had them (tomlkit adds lines with \\n), and no blank line left at
    the end by deleting the last table unless the file ended that way."""
    nl = "\n"
    if "\r\n" in before and "\n" not in before.replace("\r\n", ""):
        nl, after = "\r\n", re.sub(r"(?<!\r)\n", "\r\n", after)
    if after.endswith(nl + nl) and not before.endswith(nl + nl):
        after = after.rstrip("\r\n") + nl if after.strip() else ""
    return after


def _item(value: Any) -> Any:
    """A tomlkit item that fits on one line: tables become inline tables."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        for k, v in value.items():
            table[k] = _spaced(table, _item(v))
        return table
    if isinstance(value, list):
        array = tomlkit.array()
        for v in value:
            array.append(_item(v))
        return array
    return tomlkit.item(value)


def _spaced(table: Any, item: Any) -> Any:
    if isinstance(table, InlineTable) and len(table):
        item.trivia.indent = " "  # tomlkit would write {a = 1,b = 2}
    return item


def _edit_error(path: str, key: str, reason: str) -> ConfigError:
    return ConfigError("Cannot set %s in %s: %s." % (key, show_path(path), reason),
                       [Problem(path, tuple(key.split(".")), reason)])
