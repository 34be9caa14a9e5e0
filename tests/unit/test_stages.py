"""The stage graph of multi-stage Dockerfiles: names, dependencies, targets."""

from __future__ import annotations

import re

import pytest

from overlayctl.builder.dockerfile import parse
from overlayctl.builder.stages import (
    StageError,
    dependencies,
    find_stage,
    mount_sources,
    needed,
    split_stages,
    target_stage,
)

TWO_INDEPENDENT = """\
ARG BASE=bb:1
ARG OTHER
FROM ${BASE} AS Build-A
RUN make a
FROM $BASE AS b
RUN make b
FROM scratch AS unused
COPY x /
FROM bb:1
COPY --from=build-a /a /
COPY --from=1 /b /
"""


def test_global_args_and_stages_are_split_at_each_from():
    global_args, stages = split_stages(parse(TWO_INDEPENDENT))
    assert [ins.args[0] for ins in global_args] == ["BASE", "OTHER"]
    assert [stage.name for stage in stages] == ["build-a", "b", "unused", ""]  # names lower-cased
    assert [stage.label for stage in stages] == ["build-a", "b", "unused", "stage-3"]
    assert [len(stage.instructions) for stage in stages] == [1, 1, 1, 2]


def test_dependencies_follow_from_copy_from_by_name_and_index_and_mounts():
    _, stages = split_stages(parse(TWO_INDEPENDENT))
    graph = dependencies(stages, {"BASE": "bb:1"})
    assert graph == {0: set(), 1: set(), 2: set(), 3: {0, 1}}
    assert needed(graph, 3) == [0, 1, 3]  # "unused" is not built
    text = "FROM bb:1 AS tools\nFROM bb:1 AS x\nRUN --mount=type=bind,from=tools,target=/t true\nFROM x\n"
    _, stages = split_stages(parse(text))
    graph = dependencies(stages, {})
    assert graph == {0: set(), 1: {0}, 2: {1}}
    assert needed(graph, 2) == [0, 1, 2]
    assert needed(graph, 0) == [0]


def test_global_args_expand_in_from_and_copy_from():
    text = "ARG SRC=builder\nFROM bb:1 AS builder\nFROM ${SRC}\nFROM bb:1\nCOPY --from=$SRC /a /\n"
    _, stages = split_stages(parse(text))
    assert dependencies(stages, {"SRC": "builder"}) == {0: set(), 1: {0}, 2: {0}}
    # Without the value the words name an image, not a stage.
    assert dependencies(stages, {}) == {0: set(), 1: set(), 2: set()}


def test_a_stage_only_sees_earlier_stages_and_images_otherwise():
    _, stages = split_stages(parse("FROM bb:1 AS a\nFROM bb:1 AS b\nCOPY --from=c /x /\nFROM bb:1 AS c\n"))
    assert find_stage(stages, "A", 1) is stages[0]  # case-insensitive, as Docker
    assert find_stage(stages, "c", 1) is None  # a later stage: an image name
    assert find_stage(stages, "bb:1", 2) is None
    with pytest.raises(StageError, match="stage index 2 is not an earlier stage"):
        find_stage(stages, "2", 1)


def test_an_index_pointing_forward_names_its_line():
    _, stages = split_stages(parse("FROM bb:1\nCOPY --from=1 /x /\nFROM bb:1\n"))
    with pytest.raises(StageError) as caught:
        dependencies(stages, {})
    assert caught.value.line == 2 and caught.value.keyword == "COPY"


@pytest.mark.parametrize(
    ("text", "needle", "line"),
    [
        ("FROM bb:1 AS a\nFROM bb:1 AS A\n", 'duplicate stage name "a" (first at line 1)', 2),
        ("FROM bb:1 AS 1abc\n", 'invalid stage name "1abc"', 1),
        ("FROM bb:1 AS a/b\n", 'invalid stage name "a/b"', 1),
    ],
)
def test_bad_stage_names(text, needle, line):
    with pytest.raises(StageError, match=re.escape(needle)) as caught:
        split_stages(parse(text))
    assert caught.value.line == line


def test_target_is_found_case_insensitively_and_an_unknown_one_is_an_error():
    _, stages = split_stages(parse(TWO_INDEPENDENT))
    assert target_stage(stages, None) is stages[-1]
    assert target_stage(stages, "BUILD-A") is stages[0]
    with pytest.raises(StageError, match='target stage "nope" could not be found'):
        target_stage(stages, "nope")


def test_mount_sources_reads_from_fields_only():
    ins = parse("FROM bb:1\nRUN --mount=type=cache,target=/c --mount=type=bind,source=/s,from=tools,target=/t true\n")[
        1
    ]
    assert mount_sources(ins) == ["tools"]


def test_a_stage_named_as_its_own_base_is_refused_with_its_line():
    _, stages = split_stages(parse("FROM bb:1\nFROM tools AS tools\n"))
    with pytest.raises(StageError, match='stage "tools" cannot start FROM itself') as caught:
        dependencies(stages, {})
    assert caught.value.line == 2
