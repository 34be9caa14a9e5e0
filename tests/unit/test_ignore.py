""".dockerignore rules with Docker's (moby/patternmatcher) semantics; pure, no root."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overlayctl.builder.ignore import IgnoreRules
from overlayctl.errors import InvalidArgumentError


def rules(*lines: str) -> IgnoreRules:
    return IgnoreRules.from_lines(lines)


@pytest.mark.parametrize(
    "pattern, ignored, kept",
    [
        # "*" stays within one directory level.
        ("*.md", ["a.md", "README.md", ".md"], ["x/a.md", "a.mdx", "md"]),
        ("*/temp*", ["somedir/temporary.txt", "a/temp", "a/temp/x"], ["temp", "a/b/temp", "a/xtemp"]),
        ("*/*/temp*", ["a/b/temp.txt"], ["a/temp.txt", "temp.txt"]),
        # "?" is exactly one character other than "/".
        ("temp?", ["tempa", "temp.", "tempa/inside"], ["temp", "tempab", "x/tempa", "temp/"]),
        ("a?c", ["abc"], ["a/c", "ac"]),
        # "**" is any number of directories, including none.
        ("**/*.go", ["main.go", "cmd/main.go", "a/b/c/x.go"], ["main.go.txt", "x.goo"]),
        ("**/node_modules", ["node_modules", "web/node_modules/x/y.js"], ["node_modulesx", "xnode_modules/a"]),
        ("src/**/test", ["src/test", "src/a/b/test", "src/a/test/x"], ["test", "src/atest", "lib/a/test"]),
        ("build/**", ["build/x", "build/a/b"], ["build", "builder/x"]),
        ("**", ["a", "a/b", ".git"], []),
        ("a/**/b/*.txt", ["a/b/x.txt", "a/1/2/b/x.txt"], ["a/b/c/x.txt", "a/xb/x.txt"]),
        # Character classes, Go's syntax: "^" negates, "!" is just a character.
        ("file[0-9].txt", ["file1.txt", "file9.txt"], ["filea.txt", "file10.txt"]),
        ("file[abc]", ["filea", "filec"], ["filed", "file"]),
        ("file[^0-9]", ["filea", "file-"], ["file1", "file"]),
        ("file[!a]", ["file!", "filea"], ["fileb"]),
        ("[\\-a]x", ["-x", "ax"], ["bx"]),
        ("x[\\]]y", ["x]y"], ["xy", "x\\y"]),
        # "\" escapes the next character.
        ("\\*.txt", ["*.txt"], ["a.txt"]),
        ("a\\?b", ["a?b"], ["axb"]),
        # Characters that mean something in regular expressions are plain here.
        ("a.b", ["a.b"], ["axb"]),
        ("a+(b)|c{1}$", ["a+(b)|c{1}$"], ["aa(b)|c{1}$", "a+b"]),
    ],
)
def test_patterns(pattern, ignored, kept):
    r = rules(pattern)
    assert [p for p in ignored if not r.ignored(p)] == []
    assert [p for p in kept if r.ignored(p)] == []


def test_a_pattern_matching_a_parent_directory_ignores_everything_under_it():
    r = rules("build", "docs/*")
    assert r.ignored("build")
    assert r.ignored("build/x/y/z.o")
    assert not r.ignored("builder/x")
    assert not r.ignored("src/build")  # patterns are anchored at the context root
    assert r.ignored("docs/a/b")
    assert not r.ignored("docs")


def test_exceptions_re_include_and_the_last_match_wins():
    # Docker's documented example.
    r = rules("*.md", "!README*.md", "README-secret.md")
    assert r.ignored("CHANGES.md")
    assert not r.ignored("README.md")
    assert not r.ignored("README-public.md")
    assert r.ignored("README-secret.md")


def test_order_matters():
    assert rules("!README.md", "*.md").ignored("README.md")
    assert not rules("*.md", "!README.md").ignored("README.md")


def test_exception_under_an_ignored_directory():
    r = rules("build", "!build/keep")
    assert r.ignored("build/drop.o")
    assert not r.ignored("build/keep")
    assert not r.ignored("build/keep/deep/file")
    assert r.ignored("build")  # the directory itself is still excluded; a walker must descend for keep


def test_an_exception_alone_ignores_nothing():
    r = rules("!important")
    assert not r.ignored("important") and not r.ignored("other")


@pytest.mark.parametrize(
    "line, path",
    [
        ("/build", "build/x"),
        ("build/", "build/x"),
        ("./build", "build/x"),
        ("//build//out/", "build/out/x"),
        ("a/../build", "build/x"),
        ("  build  ", "build/x"),
        ("build\r", "build/x"),
    ],
)
def test_patterns_are_cleaned(line, path):
    r = rules(line)
    assert r.patterns == ["build/out" if "out" in line else "build"]
    assert r.ignored(path)


def test_exceptions_are_cleaned_too():
    r = rules("*", "! /keep/ ")
    assert r.patterns == ["*", "!keep"]
    assert not r.ignored("keep")
    assert r.ignored("other")


def test_comments_and_blank_lines():
    r = rules("# comment", "", "   ", "\t", "secret", " #notacomment")
    assert r.patterns == ["secret", "#notacomment"]
    assert not r.ignored("# comment")
    assert r.ignored("#notacomment")
    assert r.ignored("secret")


def test_relpaths_are_normalised():
    r = rules("a/b")
    assert r.ignored("./a/b") and r.ignored("/a/b/") and r.ignored("a//b")
    assert not r.ignored("") and not r.ignored(".")


def test_no_rules_ignore_nothing():
    r = rules()
    assert not r.ignored("anything") and not r.may_contain_exceptions("anything")


@pytest.mark.parametrize("line", ["[", "a[", "[]", "[a", "[a-]", "[-a]", "[z-a]", "a\\", "x[^]"])
def test_bad_patterns(line):
    with pytest.raises(InvalidArgumentError) as info:
        IgnoreRules.from_lines(["ok", line], source="ctx/.dockerignore")
    assert str(info.value) == f"ctx/.dockerignore:2: syntax error in pattern: {line}"


def test_a_lone_exclamation_mark_is_an_error():
    with pytest.raises(InvalidArgumentError, match=r'^\.dockerignore:1: illegal exclusion pattern: "!"$'):
        rules("! ")


def test_load(tmp_path):
    (tmp_path / ".dockerignore").write_text("\ufeff# build output\nbuild\n!build/keep\r\n*.log\n")
    r = IgnoreRules.load(str(tmp_path))
    assert r.patterns == ["build", "!build/keep", "*.log"]
    assert r.ignored("build/a") and not r.ignored("build/keep") and r.ignored("x.log")


def test_load_without_a_dockerignore_ignores_nothing(tmp_path):
    r = IgnoreRules.load(str(tmp_path))
    assert r.patterns == [] and not r.ignored("Dockerfile")


def test_load_reports_a_bad_pattern_with_the_file(tmp_path):
    (tmp_path / ".dockerignore").write_text("ok\n\n[\n")
    with pytest.raises(InvalidArgumentError, match=r"\.dockerignore:3: syntax error in pattern: \[$"):
        IgnoreRules.load(str(tmp_path))


def test_load_unreadable(tmp_path):
    (tmp_path / ".dockerignore").mkdir()
    with pytest.raises(InvalidArgumentError, match="cannot read .*Is a directory"):
        IgnoreRules.load(str(tmp_path))


def test_from_lines_accepts_one_string():
    assert IgnoreRules.from_lines("a\n!b\n").patterns == ["a", "!b"]


# --- may_contain_exceptions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines, reldir, expected",
    [
        (["build", "!build/keep"], "build", True),
        (["build", "!build/keep"], "build/other", False),
        (["build", "!build/keep/x"], "build/keep", True),
        (["build", "!build/*/x"], "build/a", True),
        (["build", "!build/*/x"], "build/a/b", False),
        (["build", "!build/[ab]/x"], "build/c", False),
        (["build", "!build/[ab]/x"], "build/b", True),
        (["*", "!**/*.go"], "deep/dir", True),
        (["*", "!src/**"], "src", True),
        (["*", "!src/**"], "lib", False),
        (["*", "!keep"], "other", False),
        (["*", "!keep"], "", True),
        (["build"], "build", False),  # no exceptions at all
        (["build", "!other/x"], "build", False),
        (["build", "!build"], "build/x", False),  # matches only the parent: nothing below changes
    ],
)
def test_may_contain_exceptions(lines, reldir, expected):
    assert IgnoreRules.from_lines(lines).may_contain_exceptions(reldir) is expected


def test_may_contain_exceptions_is_consistent_with_ignored():
    r = rules("vendor", "!vendor/keep/*.go")
    assert r.ignored("vendor/keep")
    assert r.may_contain_exceptions("vendor") and r.may_contain_exceptions("vendor/keep")
    assert not r.ignored("vendor/keep/a.go")
    assert not r.may_contain_exceptions("vendor/drop")
    assert r.ignored("vendor/drop/a.go")


# --- properties ---------------------------------------------------------------------------------------------------

_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)


@given(_NAME, st.lists(_NAME, max_size=3), _NAME)
def test_a_literal_name_ignores_itself_and_everything_below(name, below, other):
    r = rules(name)
    assert r.ignored(name)
    assert r.ignored("/".join([name, *below]))
    if other != name:
        assert not r.ignored(other)
        assert not r.ignored(f"{other}/{name}")
    assert not r.ignored(name + "x")


@given(st.lists(_NAME, min_size=1, max_size=4))
def test_double_star_slash_name_matches_at_any_depth(dirs):
    r = rules("**/" + dirs[-1])
    assert r.ignored("/".join(dirs))
