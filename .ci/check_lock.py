"""Fail when requirements-dev.lock no longer matches pyproject.toml (works offline).

Every dependency of pyproject.toml (the project's and the dev extra's) must be pinned in the lock
with a version its specifier accepts, each pin must carry hashes, and the lock must have been
written by the command CONTRIBUTING.md gives. A failure says how to write the lock again."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-dev.lock"
COMMAND = (
    "uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 "
    "--generate-hashes -o requirements-dev.lock"
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)(?:\s*;[^\\]*)?\s*\\?$")


def pins(text: str) -> tuple[dict[str, list[Version]], list[str]]:
    """The versions pinned for each package (a universal lock may pin one per platform), and
    the packages pinned without a hash."""
    pinned: dict[str, list[Version]] = {}
    unhashed: list[str] = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if match is None:
            continue
        name = canonicalize_name(match.group(1))
        pinned.setdefault(name, []).append(Version(match.group(2)))
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if not following.strip().startswith("--hash=sha256:"):
            unhashed.append(name)
    return pinned, unhashed


def problems() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    text = LOCK.read_text(encoding="utf-8")
    found: list[str] = []
    if COMMAND not in text:
        found.append(f"the lock was not written by `{COMMAND}`")
    pinned, unhashed = pins(text)
    found += [f"{name} is pinned without a hash" for name in unhashed]
    environment = {**default_environment(), "extra": "dev"}
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue  # e.g. uvloop on Windows; the universal lock carries the marker itself
        versions = pinned.get(canonicalize_name(requirement.name), [])
        if not versions:
            found.append(f"{requirement.name} is required by pyproject.toml but not in the lock")
        elif not any(requirement.specifier.contains(v, prereleases=True) for v in versions):
            shown = ", ".join(str(v) for v in versions)
            found.append(f"{requirement} is required, the lock pins {requirement.name}=={shown}")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"requirements-dev.lock is out of date: {problem}", file=sys.stderr)
    if found:
        print(f"Write it again (CONTRIBUTING.md): {COMMAND}", file=sys.stderr)
        return 1
    print("requirements-dev.lock matches pyproject.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
