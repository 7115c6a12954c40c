"""The floor plan stays as drawn: the error tree's drawing lists every class, module
names are nouns no letter apart, and routers do not import each other."""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from pathlib import Path

from app.domain import errors

APP = Path(__file__).resolve().parents[1] / "app"


def test_the_error_tree_drawing_lists_every_class_under_its_parent() -> None:
    drawing = (errors.__doc__ or "").splitlines()
    depth_of: dict[str, int] = {}
    parent_at: dict[int, str] = {}
    for line in drawing:
        stripped = line.lstrip(" |+-")
        name = stripped.split(" ", 1)[0]
        if not name.endswith("Error"):
            continue
        depth = (len(line) - len(stripped)) // 5
        depth_of[name] = depth
        parent_at[depth] = name
        if depth:
            cls = getattr(errors, name)
            assert cls.__base__.__name__ == parent_at[depth - 1], line
    defined = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == errors.__name__
    }
    assert set(depth_of) == defined


def _distance_one(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_no_two_modules_are_one_letter_apart() -> None:
    names = {p.stem for p in APP.rglob("*.py") if p.stem != "__init__"}
    close = [(a, b) for a, b in itertools.combinations(sorted(names), 2) if _distance_one(a, b)]
    assert close == []
    assert not {"utils", "helpers", "misc", "common"} & names


def test_routers_do_not_import_each_other() -> None:
    routers = {
        p.stem
        for p in (APP / "api").glob("*.py")
        if "router = APIRouter(" in p.read_text(encoding="utf-8")
    }
    for name in routers:
        tree = ast.parse((APP / "api" / f"{name}.py").read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "app.api":
                    imported |= {alias.name for alias in node.names}
                elif node.module.startswith("app.api."):
                    imported.add(node.module.rsplit(".", 1)[1])
        assert not (imported & routers) - {name}, f"app/api/{name}.py imports a router"


def test_the_architecture_page_names_only_files_that_exist() -> None:
    page = (APP.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:app|tests)/[\w/]+\.py)`", page))
    assert len(named) > 20
    missing = sorted(path for path in named if not (APP.parent / path).is_file())
    assert missing == []
