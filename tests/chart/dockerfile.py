"""Read a Dockerfile and a .dockerignore the way `docker build` does, without an engine.

Only what the image tests need: instructions grouped by stage (continuation lines joined,
comments dropped) and Docker's .dockerignore matching (last matching pattern wins, `!` re-includes,
a pattern that matches a parent folder matches everything below it, `**` spans folders).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ENV, ...
    arguments: str


@dataclass
class Stage:
    base: str  # the FROM argument, e.g. "${BASE_IMAGE}"
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV instructions of this stage, `KEY=value` form, in order."""
        values: dict[str, str] = {}
        for instruction in self.of("ENV"):
            for token in shlex.split(instruction.arguments):
                key, _, value = token.partition("=")
                values[key] = value
        return values

    def workdir(self) -> str | None:
        workdirs = self.of("WORKDIR")
        return workdirs[-1].arguments if workdirs else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    @classmethod
    def parse(cls, text: str) -> Dockerfile:
        logical: list[str] = []
        pending = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not pending and (not line or line.startswith("#")):
                continue
            if pending and line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            logical.append(pending + line)
            pending = ""
        if pending:
            logical.append(pending)

        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for line in logical:
            keyword, _, arguments = line.partition(" ")
            keyword, arguments = keyword.upper(), arguments.strip()
            if keyword == "FROM":
                parts = arguments.split()
                parts = [p for p in parts if not p.startswith("--")]
                name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
                stages.append(Stage(base=parts[0], name=name))
            elif not stages:
                if keyword == "ARG":
                    key, _, default = arguments.partition("=")
                    global_args[key] = default
            else:
                stages[-1].instructions.append(Instruction(keyword, arguments))
        return cls(global_args=global_args, stages=stages)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}; stages: {[s.name for s in self.stages]}")


def copy_sources(instruction: Instruction) -> list[str]:
    """Context paths a `COPY` reads (none for `COPY --from=...`, which reads another stage)."""
    tokens = shlex.split(instruction.arguments)
    if any(t.startswith("--from") for t in tokens):
        return []
    paths = [t for t in tokens if not t.startswith("--")]
    return paths[:-1]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
            continue
        char = pattern[i]
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(ignore_text: str, path: str) -> bool:
    """Whether `path` (relative to the context root) is left out of the build context."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in ignore_text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/") or "."
        rules.append((negated, _pattern_regex(pattern)))

    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # parents, then the path
    excluded = False
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded
