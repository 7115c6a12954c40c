"""Fail unless PostgreSQL and SQLite tests both ran and none of them was skipped."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def main(path: str) -> int:
    cases = ET.parse(path).getroot().iter("testcase")
    ran = {"postgresql": 0, "sqlite": 0}
    skipped: list[str] = []
    for case in cases:
        name = case.get("name", "")
        for backend in ran:
            if f"[{backend}" in name or f"-{backend}" in name:
                if case.find("skipped") is not None:
                    skipped.append(f"{case.get('classname')}::{name}")
                else:
                    ran[backend] += 1
    print(f"backend tests run: {ran}")
    if skipped:
        print("skipped backend tests:\n  " + "\n  ".join(skipped), file=sys.stderr)
        return 1
    if not all(ran.values()):
        print("a backend ran no tests", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
