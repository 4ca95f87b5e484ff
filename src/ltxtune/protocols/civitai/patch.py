"""JSON Patch (RFC 6902: add, remove, replace, test) on a workflow's `/tags` and `/metadata`."""

from __future__ import annotations

import copy
from typing import Any

from ltxtune.protocols.civitai.errors import invalid as _invalid


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise _invalid({"path": [f"{path!r} is not a JSON pointer"]})
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_patch(document: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        where = f"[{index}]"
        if not isinstance(operation, dict) or operation.get("op") not in ("add", "remove", "replace", "test"):
            raise _invalid({where: ["each operation needs op add, remove, replace or test"]})
        parts = _pointer(str(operation.get("path", "")))
        if parts[0] not in ("tags", "metadata"):
            raise _invalid({f"{where}.path": ["only /tags and /metadata can be changed"]})
        parent: Any = document
        for part in parts[:-1]:
            try:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise _invalid({f"{where}.path": [f"{operation['path']} does not exist"]}) from None
        if not isinstance(parent, (dict, list)):
            raise _invalid({f"{where}.path": [f"{operation['path']} goes into a value that is neither an object nor a list"]})
        last, op, value = parts[-1], operation["op"], operation.get("value")
        try:
            if isinstance(parent, list):
                position = len(parent) if last == "-" else int(last)
                if op == "add":
                    parent.insert(position, value)
                elif op == "remove":
                    parent.pop(position)
                elif op == "replace":
                    parent[position] = value
                elif parent[position] != value:
                    raise _invalid({where: ["test failed"]})
            else:
                if op in ("add", "replace"):
                    if op == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = value
                elif op == "remove":
                    del parent[last]
                elif parent.get(last) != value:
                    raise _invalid({where: ["test failed"]})
        except (KeyError, IndexError, ValueError):
            raise _invalid({f"{where}.path": [f"{operation['path']} does not exist"]}) from None
    return document
