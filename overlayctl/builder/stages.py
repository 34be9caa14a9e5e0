"""Build stages: a Dockerfile cut at each FROM, and what each stage needs.

A stage depends on another when it starts FROM it, copies from it
(`COPY --from`) or mounts it (`RUN --mount=...,from=`). Only the stages the
target needs are built, and stages that do not depend on each other may be
built at the same time. Everything here is pure: words are expanded with
the global ARGs (those before the first FROM), which is all Docker lets
FROM, `--from` and `from=` see.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from overlayctl.builder.dockerfile import Instruction, expand
from overlayctl.errors import InvalidArgumentError

# Docker's rule for `FROM ... AS name` (after lower-casing).
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")


class Stage:
    """One FROM and the instructions after it, up to the next FROM."""

    __slots__ = ("index", "name", "from_ins", "instructions")

    def __init__(self, index: int, name: str, from_ins: Instruction, instructions: list[Instruction]) -> None:
        self.index = index
        self.name = name  # lower-cased, "" when the stage has no AS
        self.from_ins = from_ins
        self.instructions = instructions

    @property
    def label(self) -> str:
        """How output names the stage: its name, or BuildKit's stage-N."""
        return self.name or f"stage-{self.index}"

    def __repr__(self) -> str:
        return f"Stage({self.index}, {self.name!r}, line {self.from_ins.line}, {len(self.instructions)} steps)"


class StageError(InvalidArgumentError):
    """A stage graph that cannot be built; `line` is the instruction's, if any."""

    def __init__(self, message: str, line: int | None = None, keyword: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.keyword = keyword


def split_stages(instructions: list[Instruction]) -> tuple[list[Instruction], list[Stage]]:
    """The global ARGs (before the first FROM) and the stages, in order."""
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    seen: dict[str, int] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            name = ins.args[2].lower() if len(ins.args) == 3 else ""
            if name:
                if not _STAGE_NAME.fullmatch(name):
                    raise StageError(
                        f'invalid stage name "{ins.args[2]}": a letter, then letters, digits, "-", "_" or "."',
                        ins.line,
                        "FROM",
                    )
                if name in seen:
                    raise StageError(f'duplicate stage name "{name}" (first at line {seen[name]})', ins.line, "FROM")
                seen[name] = ins.line
            stages.append(Stage(len(stages), name, ins, []))
        elif not stages:
            global_args.append(ins)  # the parser allows only ARG here
        else:
            stages[-1].instructions.append(ins)
    return global_args, stages


def find_stage(stages: list[Stage], word: str, before: int, by_index: bool = True) -> Stage | None:
    """The stage among the first `before` that `word` names (case-insensitive
    name, or index), or None when it names no earlier stage. FROM takes
    names only (`FROM 0` is an image), as in Docker."""
    lowered = word.lower()
    for stage in stages[:before]:
        if stage.name and stage.name == lowered:
            return stage
    if by_index and word.isdigit():
        index = int(word)
        if index < before:
            return stages[index]
        raise StageError(f"stage index {index} is not an earlier stage (stages are numbered from 0)")
    return None


def mount_sources(ins: Instruction) -> list[str]:
    """The `from=` values of a RUN's --mount flags, as written."""
    found = []
    for spec in ins.repeated.get("mount", []):
        for field in spec.split(","):
            key, eq, value = field.partition("=")
            if eq and key.strip().lower() == "from":
                found.append(value.strip())
    return found


def base_word(stage: Stage, meta: Mapping[str, str], escape: str = "\\") -> str:
    """What the stage starts FROM, its variables expanded with the global ARGs."""
    return expand(stage.from_ins.args[0], meta, escape)


def source_words(ins: Instruction, meta: Mapping[str, str], escape: str = "\\") -> list[str]:
    """The other stages or images an instruction reads: COPY's --from, RUN's mounts' from=."""
    words = []
    if ins.keyword == "COPY" and "from" in ins.flags:
        words.append(ins.flags["from"])
    elif ins.keyword == "RUN":
        words += mount_sources(ins)
    return [expand(word, meta, escape) for word in words]


def dependencies(stages: list[Stage], meta: Mapping[str, str], escape: str = "\\") -> dict[int, set[int]]:
    """For every stage, the indexes of the earlier stages it needs."""
    graph: dict[int, set[int]] = {}
    for stage in stages:
        needs: set[int] = set()
        words = [(stage.from_ins, base_word(stage, meta, escape))]
        words += [(ins, word) for ins in stage.instructions for word in source_words(ins, meta, escape)]
        for ins, word in words:
            try:
                found = find_stage(stages, word, stage.index, by_index=ins is not stage.from_ins)
            except StageError as exc:
                raise StageError(str(exc), ins.line, ins.keyword) from None
            if found is not None:
                needs.add(found.index)
            elif ins is stage.from_ins and word.lower() == stage.name and stage.name:
                raise StageError(f'stage "{stage.name}" cannot start FROM itself', ins.line, "FROM")
        graph[stage.index] = needs
    return graph


def target_stage(stages: list[Stage], target: str | None) -> Stage:
    """The stage `--target` names (the last one without it)."""
    if not target:
        return stages[-1]
    lowered = target.lower()
    for stage in stages:
        if stage.name == lowered:
            return stage
    raise StageError(f'target stage "{target}" could not be found')


def needed(graph: Mapping[int, set[int]], target: int) -> list[int]:
    """The stages the target needs, itself included, in file order."""
    wanted = {target}
    todo = [target]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    return sorted(wanted)
