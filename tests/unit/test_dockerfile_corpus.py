"""Every Dockerfile of the corpus of real public files (tests/data/dockerfiles,
sources in SOURCES.md) parses, and what it parses to lines up with the text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from overlayctl.builder.dockerfile import Heredoc, parse_dockerfile_file

CORPUS = Path(__file__).resolve().parents[1] / "data" / "dockerfiles"
FILES = sorted(CORPUS.glob("*.Dockerfile"))


def _sources() -> dict[str, list[str]]:
    rows = {}
    for line in (CORPUS / "SOURCES.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].endswith(".Dockerfile") and "/" not in cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def test_every_file_has_its_source_named_and_the_corpus_is_large_enough():
    sources = _sources()
    assert sorted(sources) == [f.name for f in FILES]
    for name, (repo, path, commit, license_name) in sources.items():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo), name
        assert path and re.fullmatch(r"[0-9a-f]{40}", commit) and license_name, name
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_real_dockerfile_parses_and_each_instruction_starts_on_its_line(path):
    instructions, _escape = parse_dockerfile_file(str(path))
    lines = path.read_text().split("\n")
    previous = 0
    for ins in instructions:
        assert ins.line > previous
        previous = ins.line
        # A here-document's body read as instructions, or one consumed too
        # far, would put an instruction on a line that does not start it.
        assert lines[ins.line - 1].lstrip().upper().startswith(ins.keyword), (ins.line, ins.original)
        for heredoc in ins.heredocs:
            assert heredoc.name in ins.original


def _parse(name: str):
    return parse_dockerfile_file(str(CORPUS / f"{name}.Dockerfile"))[0]


def test_corpus_covers_the_syntax_real_files_use():
    seen: set[str] = set()
    for path in FILES:
        for ins in parse_dockerfile_file(str(path))[0]:
            seen.add(ins.keyword)
            seen.update(f"{ins.keyword} --{flag}" for flag in (*ins.flags, *ins.repeated))
            if ins.heredocs:
                seen.add(f"{ins.keyword} heredoc")
            if ins.keyword == "FROM" and len(ins.args) == 3:
                seen.add("FROM AS")
    wanted = {
        "FROM AS",
        "COPY --from",
        "COPY --link",
        "COPY --chown",
        "RUN --mount",
        "RUN heredoc",
        "HEALTHCHECK",
        "ONBUILD",
        "SHELL",
        "FROM --platform",
    }
    assert wanted <= seen, wanted - seen


def test_heredoc_bodies_of_a_real_file():
    run = [ins for ins in _parse("awesome-compose-angular") if ins.heredocs][0]
    assert run.original == "RUN <<EOF"
    assert run.heredocs == [Heredoc("EOF", "apt-get update\napt-get install -y --no-install-recommends git\n")]


def test_onbuild_triggers_of_a_real_file():
    triggers = [ins.args[0] for ins in _parse("python-3.4-onbuild") if ins.keyword == "ONBUILD"]
    assert triggers and all(t.split()[0] in ("COPY", "RUN") for t in triggers)
