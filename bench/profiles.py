"""A short summary of a py-spy profile (collapsed stacks): where the bot's CPU time went."""

from __future__ import annotations

import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^():]*)(?::\d+)?\)$")


def owner(frame: str) -> str:
    """The package (or module) a frame belongs to: bot, asyncio, sqlalchemy, ..."""
    match = FRAME.match(frame)
    path = match.group("path") if match else frame
    if "site-packages/" in path:  # py-spy shortens most paths to the package's own
        path = path.split("site-packages/")[1]
    return path.split("/")[0] if "/" in path else path


def summary(path: Path, top: int = 12) -> str:
    """Shares of samples by package of the innermost frame, and by the innermost frame of the
    bot's own code (what the bot was doing, whoever's code ran)."""
    total = 0
    packages: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        samples = int(count)
        total += samples
        packages[owner(frames[-1])] += samples
        mine = [f for f in frames if "(bot/" in f]
        ours[FRAME.sub(r"\g<function>", mine[-1]) if mine else "(outside the bot's code)"] += (
            samples
        )
    if not total:
        return f"{path}: no samples"
    lines = [f"{path} ({total} samples)", "  by package:"]
    lines += [f"    {n / total:6.1%} {name}" for name, n in packages.most_common(top)]
    lines.append("  by the bot's innermost function:")
    lines += [f"    {n / total:6.1%} {name}" for name, n in ours.most_common(top)]
    return "\n".join(lines)
