"""Our parser against BuildKit's own: for each of BuildKit's parser test files
(tests/data/dockerfiles/buildkit-parser, see SOURCES.md) the `.result` file
is BuildKit's dump of what it parsed, one `(keyword [flags] "arg" ...)` per
instruction; ours must give the same instructions with the same words."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlayctl.builder.dockerfile import DockerfileError, Instruction, parse, parse_dockerfile_file

ORACLE = Path(__file__).resolve().parents[1] / "data" / "dockerfiles" / "buildkit-parser"
NAMES = sorted(p.stem for p in ORACLE.glob("*.Dockerfile"))

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a", "\\": "\\", '"': '"'}


class _Reader:
    """Reads BuildKit's dump: Go-quoted strings, [flag lists], (nested nodes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def string(self) -> str:
        assert self.text[self.pos] == '"'
        self.pos += 1
        out = []
        while self.text[self.pos] != '"':
            ch = self.text[self.pos]
            self.pos += 1
            if ch != "\\":
                out.append(ch)
                continue
            esc = self.text[self.pos]
            self.pos += 1
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
            else:
                width = {"x": 2, "u": 4, "U": 8}[esc]
                out.append(chr(int(self.text[self.pos : self.pos + width], 16)))
                self.pos += width
        self.pos += 1
        return "".join(out)

    def node(self) -> tuple[str, list[str], list[object]]:
        """(keyword, flags, args); an arg is a string or a nested node (ONBUILD)."""
        assert self.text[self.pos] == "("
        self.pos += 1
        start = self.pos
        while self.text[self.pos] not in " )":
            self.pos += 1
        keyword = self.text[start : self.pos]
        flags: list[str] = []
        args: list[object] = []
        while True:
            self.blanks()
            ch = self.text[self.pos]
            if ch == ")":
                self.pos += 1
                return keyword, flags, args
            if ch == "[":
                self.pos += 1
                while self.text[self.pos] != "]":
                    self.blanks()
                    flags.append(self.string())
                    self.blanks()
                self.pos += 1
            elif ch == "(":
                args.append(self.node())
            else:
                args.append(self.string())


def _expected(name: str) -> list[tuple[str, list[str], list[object]]]:
    return [_Reader(line).node() for line in (ORACLE / f"{name}.result").read_text().splitlines() if line.strip()]


def _key_values(args: list[object]) -> list[object]:
    """BuildKit dumps ENV/LABEL pairs as key, value, separator: keep key and value."""
    return [arg for i, arg in enumerate(args) if i % 3 != 2]


def _compare(ins: Instruction, keyword: str, flags: list[str], args: list[object]) -> None:
    assert ins.keyword.lower() == keyword, (ins.line, ins.original)
    ours_flags = sorted(f"--{k}={v}" for k, v in ins.flags.items())
    assert ours_flags == sorted(flags), (ins.line, ins.original)
    if keyword == "onbuild":
        (inner,) = args
        trigger = parse(f"FROM scratch\n{ins.args[0]}\n")[1]
        assert isinstance(inner, tuple)
        _compare(trigger, *inner)
    elif keyword in ("env", "label"):
        assert ins.args == _key_values(args), (ins.line, ins.original)
    else:
        assert ins.args == args, (ins.line, ins.original)


@pytest.mark.parametrize("name", NAMES)
def test_parse_matches_buildkit(name):
    ours, _escape = parse_dockerfile_file(str(ORACLE / f"{name}.Dockerfile"))
    expected = _expected(name)
    if name == "args":
        # BuildKit keeps `ARG a b=c` as one instruction; we keep one per name.
        flat: list[tuple[str, list[str], list[object]]] = []
        for keyword, flags, args in expected:
            flat += [(keyword, flags, [arg]) for arg in args] if keyword == "arg" else [(keyword, flags, args)]
        expected = flat
        ours_words = [(i.keyword.lower(), i.args if i.keyword != "ARG" else ["=".join(i.args)]) for i in ours]
        assert [(keyword, args) for keyword, _flags, args in expected] == ours_words
        return
    assert [e[0] for e in expected] == [i.keyword.lower() for i in ours]
    for ins, (keyword, flags, args) in zip(ours, expected, strict=True):
        _compare(ins, keyword, flags, args)


def test_the_oracle_is_there():
    assert len(NAMES) >= 20


@pytest.mark.parametrize("path", sorted((ORACLE / "negative").glob("*.Dockerfile")), ids=lambda p: p.stem)
def test_what_buildkit_refuses_we_refuse_with_the_file_named(path):
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile_file(str(path))
    assert str(info.value).startswith(str(path))
