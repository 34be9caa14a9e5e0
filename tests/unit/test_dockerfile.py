"""Dockerfile parsing and word expansion, to Docker's rules; no root, no files but tmp_path."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overlayctl.builder.dockerfile import (
    DockerfileError,
    Heredoc,
    Instruction,
    expand,
    expand_heredoc,
    parse,
    parse_dockerfile_file,
    read_directives,
)
from overlayctl.errors import InvalidArgumentError


def one(line: str) -> Instruction:
    """Parse a single instruction after a FROM."""
    instructions = parse(f"FROM busybox\n{line}\n")
    assert len(instructions) == 2
    return instructions[1]


def parse_text_with_escape(text: str) -> tuple[list[Instruction], str]:
    """parse() does not return the escape character; parse_dockerfile_file() does."""
    with tempfile.NamedTemporaryFile("w", suffix=".Dockerfile", delete=False) as f:
        f.write(text)
    try:
        return parse_dockerfile_file(f.name)
    finally:
        os.unlink(f.name)


def error_of(text: str, path: str = "Dockerfile") -> str:
    with pytest.raises(DockerfileError) as info:
        parse(text, path)
    return str(info.value)


# --- shapes --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, keyword, args, json_form, flags",
    [
        ("RUN echo hi && ls", "RUN", ["echo hi && ls"], False, {}),
        ('RUN ["echo", "hi"]', "RUN", ["echo", "hi"], True, {}),
        ("RUN --network=none wget x", "RUN", ["wget x"], False, {"network": "none"}),
        ("CMD echo $HOME", "CMD", ["echo $HOME"], False, {}),
        ('CMD ["/bin/app", "--port", "80"]', "CMD", ["/bin/app", "--port", "80"], True, {}),
        ("CMD []", "CMD", [], True, {}),
        ('ENTRYPOINT ["/entry.sh"]', "ENTRYPOINT", ["/entry.sh"], True, {}),
        ("ENTRYPOINT exec top -b", "ENTRYPOINT", ["exec top -b"], False, {}),
        ('SHELL ["/bin/bash", "-c"]', "SHELL", ["/bin/bash", "-c"], True, {}),
        ("WORKDIR /app/my dir", "WORKDIR", ["/app/my dir"], False, {}),
        ("USER app:staff", "USER", ["app:staff"], False, {}),
        ("STOPSIGNAL SIGKILL", "STOPSIGNAL", ["SIGKILL"], False, {}),
        ("MAINTAINER Jane Doe <jane@example.com>", "MAINTAINER", ["Jane Doe <jane@example.com>"], False, {}),
        ("EXPOSE 80/tcp  443 53/udp", "EXPOSE", ["80/tcp", "443", "53/udp"], False, {}),
        ("VOLUME /data /logs", "VOLUME", ["/data", "/logs"], False, {}),
        ('VOLUME ["/data", "/my logs"]', "VOLUME", ["/data", "/my logs"], True, {}),
        ("COPY a.txt b.txt /dst/", "COPY", ["a.txt", "b.txt", "/dst/"], False, {}),
        ('COPY ["my file", "/dst dir/"]', "COPY", ["my file", "/dst dir/"], True, {}),
        (
            "COPY --chown=1000:1000 --chmod=644 --from=build /out /app",
            "COPY",
            ["/out", "/app"],
            False,
            {"chown": "1000:1000", "chmod": "644", "from": "build"},
        ),
        ("COPY $SRC ${DST}", "COPY", ["$SRC", "${DST}"], False, {}),
        (
            "ADD --chown=app https://example.com/x.tgz /x",
            "ADD",
            ["https://example.com/x.tgz", "/x"],
            False,
            {"chown": "app"},
        ),
        ("ARG VERSION", "ARG", ["VERSION"], False, {}),
        ("ARG VERSION=1.2", "ARG", ["VERSION", "1.2"], False, {}),
        ("ARG EMPTY=", "ARG", ["EMPTY", ""], False, {}),
        ('ARG GREETING="hello world"', "ARG", ["GREETING", '"hello world"'], False, {}),
        ("LABEL version=1.0", "LABEL", ["version", "1.0"], False, {}),
        (
            'LABEL "com.example.vendor"="ACME Inc" description=This\\ text',
            "LABEL",
            ['"com.example.vendor"', '"ACME Inc"', "description", "This\\ text"],
            False,
            {},
        ),
        ("LABEL maintainer Jane Doe", "LABEL", ["maintainer", "Jane Doe"], False, {}),
        (
            "HEALTHCHECK --interval=5s CMD curl -f http://localhost/",
            "HEALTHCHECK",
            ["CMD curl -f http://localhost/"],
            False,
            {"interval": "5s"},
        ),
        ("HEALTHCHECK NONE", "HEALTHCHECK", ["NONE"], False, {}),
        ("ONBUILD RUN make", "ONBUILD", ["RUN make"], False, {}),
    ],
)
def test_instruction_shapes(line, keyword, args, json_form, flags):
    ins = one(line)
    assert (ins.keyword, ins.args, ins.json_form, ins.flags) == (keyword, args, json_form, flags)
    assert ins.line == 2
    assert ins.original == line


@pytest.mark.parametrize(
    "line, args",
    [
        ("FROM busybox", ["busybox"]),
        ("FROM busybox:1.36 AS build", ["busybox:1.36", "AS", "build"]),
        ("FROM busybox as build", ["busybox", "AS", "build"]),
        ("FROM ${BASE}:${TAG}", ["${BASE}:${TAG}"]),
    ],
)
def test_from_shapes(line, args):
    (ins,) = parse(line)
    assert ins.keyword == "FROM" and ins.args == args and ins.flags == {}


def test_from_platform_flag():
    (ins,) = parse("FROM --platform=linux/amd64 busybox")
    assert ins.flags == {"platform": "linux/amd64"} and ins.args == ["busybox"]


def test_keywords_are_case_insensitive_and_original_is_upper_cased():
    instructions = parse("from busybox\nrUn  echo   Hi\ncopy . /app\n")
    assert [i.keyword for i in instructions] == ["FROM", "RUN", "COPY"]
    # Only the keyword changes; the rest is kept as written (used in "Step 3/3 : COPY . /app").
    assert [i.original for i in instructions] == ["FROM busybox", "RUN  echo   Hi", "COPY . /app"]


def test_line_numbers_count_comments_blank_lines_and_continuations():
    text = "# a comment\n\nFROM busybox\nRUN a \\\n  b \\\n  c\n\n   # indented comment\nCMD x\n"
    assert [(i.keyword, i.line) for i in parse(text)] == [("FROM", 3), ("RUN", 4), ("CMD", 9)]


def test_flag_values_can_be_quoted_and_may_be_empty():
    ins = one('COPY --chown="app user" --chmod 755 a /b')
    # A flag without "=value" maps to "" (the builder decides whether that is allowed).
    assert ins.flags == {"chown": "app user", "chmod": ""}
    assert ins.args == ["755", "a", "/b"]


def test_double_dash_ends_flags():
    ins = one("RUN -- --not-a-flag")
    assert ins.flags == {} and ins.args == ["--not-a-flag"]


def test_a_dash_word_after_the_command_is_not_a_flag():
    ins = one("RUN ls --all")
    assert ins.flags == {} and ins.args == ["ls --all"]


# --- continuations and directives ------------------------------------------------------------------------------------


def test_continuation_joins_lines_and_keeps_indentation():
    ins = one("RUN apt-get update \\\n    && apt-get install -y curl")
    assert ins.args == ["apt-get update     && apt-get install -y curl"]
    assert ins.original == "RUN apt-get update     && apt-get install -y curl"


def test_continuation_skips_comment_and_blank_lines_inside():
    text = "FROM busybox\nRUN echo one \\\n# a comment, not the end\n\n    # another\n  && echo two\nCMD done\n"
    instructions = parse(text)
    assert [i.keyword for i in instructions] == ["FROM", "RUN", "CMD"]
    assert instructions[1].args == ["echo one   && echo two"]


def test_whitespace_after_the_continuation_character_is_allowed():
    ins = one("RUN a \\ \t\n  b")
    assert ins.args == ["a   b"]


def test_a_continuation_on_the_last_line_ends_the_instruction():
    ins = one("RUN echo hi \\")
    assert ins.args == ["echo hi"]


def test_a_hash_inside_an_instruction_is_not_a_comment():
    ins = one("RUN echo a # b")
    assert ins.args == ["echo a # b"]


WINDOWS = "# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n"


def test_escape_directive_backtick_leaves_backslashes_alone():
    instructions, escape = parse_text_with_escape(WINDOWS)
    assert escape == "`"
    assert [(i.keyword, i.args) for i in instructions] == [
        ("FROM", ["microsoft/nanoserver"]),
        ("COPY", ["testfile.txt", "c:\\"]),
        ("RUN", ["dir c:\\"]),
    ]


def test_without_the_directive_the_same_backslashes_continue_lines():
    instructions = parse(WINDOWS.replace("# escape=`\n", ""))
    # "c:\" continues onto the RUN line: two instructions, as Docker's documentation warns.
    assert [(i.keyword, i.args) for i in instructions] == [
        ("FROM", ["microsoft/nanoserver"]),
        ("COPY", ["testfile.txt", "c:RUN", "dir", "c:"]),
    ]


def test_backtick_continues_lines_and_escapes_env_words():
    text = "# escape=`\nFROM busybox\nRUN echo a `\n    b\nENV DIR=C:\\Program` Files\n"
    instructions, escape = parse_text_with_escape(text)
    assert instructions[1].args == ["echo a     b"]
    assert instructions[2].args == ["DIR", "C:\\Program` Files"]
    assert expand(instructions[2].args[1], {}, escape) == "C:\\Program Files"


@pytest.mark.parametrize("directive", ["#escape=`", "# ESCAPE = `", "#\tescape= `  ", "  # escape=`"])
def test_directive_spelling_variants(directive):
    _instructions, escape = parse_text_with_escape(f"{directive}\nFROM busybox\n")
    assert escape == "`"


def test_directives_may_be_stacked_with_syntax():
    _instructions, escape = parse_text_with_escape("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\n")
    assert escape == "`"


@pytest.mark.parametrize(
    "text",
    [
        "# a comment\n# escape=`\nFROM busybox\n",  # after a comment
        "\n# escape=`\nFROM busybox\n",  # after a blank line
        "# unknowndirective=value\n# escape=`\nFROM busybox\n",  # after an unknown directive
        "FROM busybox\n# escape=`\n",  # after an instruction
    ],
)
def test_a_directive_that_is_not_at_the_very_top_is_a_comment(text):
    _instructions, escape = parse_text_with_escape(text)
    assert escape == "\\"


def test_bad_escape_directive():
    assert error_of("# escape=x\nFROM busybox\n") == "Dockerfile:1: invalid escape directive 'x': use \\ or `"


def test_duplicate_directive():
    msg = error_of("# escape=`\n# escape=\\\nFROM busybox\n")
    assert msg == "Dockerfile:2: only one escape parser directive can be used"


def test_crlf_line_endings_and_byte_order_mark():
    instructions = parse('\ufeffFROM busybox\r\nRUN a \\\r\n  b\r\nCMD ["x"]\r\n')
    assert [(i.keyword, i.args) for i in instructions] == [("FROM", ["busybox"]), ("RUN", ["a   b"]), ("CMD", ["x"])]


# --- JSON versus shell form ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, args, json_form",
    [
        ('RUN ["a", "b c"]', ["a", "b c"], True),
        ('RUN   [ "a" ,"b" ]  ', ["a", "b"], True),
        ("RUN ['a', 'b']", ["['a', 'b']"], False),  # single quotes are not JSON
        ('RUN ["a", "b"', ['["a", "b"'], False),  # not closed: shell form
        ('RUN ["a"] && echo', ['["a"] && echo'], False),  # trailing text: shell form, as in Docker
        ('RUN [NaN, "a"]', ['[NaN, "a"]'], False),  # Go's JSON has no NaN
        ('CMD ["a\\tb", "\\u00e9"]', ["a\tb", "é"], True),
    ],
)
def test_json_or_shell_form(line, args, json_form):
    ins = one(line)
    assert ins.args == args and ins.json_form is json_form


@pytest.mark.parametrize("line", ['RUN ["a", 1]', 'CMD ["a", null]', 'COPY ["a", ["b"]]', "ENTRYPOINT [true]"])
def test_json_array_of_non_strings_is_an_error(line):
    msg = error_of(f"FROM busybox\n{line}\n")
    assert msg.startswith(f"Dockerfile:2: {line.split()[0]}: ")
    assert "must be comprised of strings only" in msg


# --- ENV and LABEL ---------------------------------------------------------------------------------------------------


def test_env_new_form_keeps_raw_values_for_expand():
    ins = one('ENV A=1 B="two words" C=a\\ b D=\'$LIT\' E=$A F="" G=')
    assert ins.args == ["A", "1", "B", '"two words"', "C", "a\\ b", "D", "'$LIT'", "E", "$A", "F", '""', "G", ""]
    env: dict[str, str] = {}
    for key, raw in zip(ins.args[::2], ins.args[1::2], strict=True):
        env[key] = expand(raw, env)
    assert env == {"A": "1", "B": "two words", "C": "a b", "D": "$LIT", "E": "1", "F": "", "G": ""}


def test_env_legacy_form_takes_the_rest_of_the_line():
    ins = one("ENV MY_NAME John  Doe ")
    assert ins.args == ["MY_NAME", "John  Doe"]


def test_env_values_with_quoted_spaces_and_equals():
    ins = one('ENV URL="http://x/?a=b c" K=v=w')
    assert ins.args == ["URL", '"http://x/?a=b c"', "K", "v=w"]
    assert expand(ins.args[1], {}) == "http://x/?a=b c"


def test_env_escape_does_not_work_inside_single_quotes():
    # As in sh, a backslash does not protect the closing single quote, so the word ends there.
    ins = one("ENV A='a\\' B=c")
    assert ins.args == ["A", "'a\\'", "B", "c"]
    assert expand(ins.args[1], {}) == "a\\"


def test_env_multi_line():
    ins = one('ENV A=1 \\\n    B="x y" \\\n    C=3')
    assert ins.args == ["A", "1", "B", '"x y"', "C", "3"]


def test_env_key_without_value_is_an_error():
    assert error_of("FROM busybox\nENV KEY\n") == "Dockerfile:2: ENV: KEY has no value (write ENV KEY=VALUE)"


def test_env_word_without_equals_after_pairs_is_an_error():
    msg = error_of("FROM busybox\nENV A=1 B\n")
    assert msg.startswith("Dockerfile:2: ENV: syntax error: can't find = in 'B'")


def test_env_blank_name_is_an_error():
    assert error_of("FROM busybox\nENV =x\n") == "Dockerfile:2: ENV: ENV names can not be blank"


# --- errors ----------------------------------------------------------------------------------------------------------


def test_unknown_instruction_names_file_and_line():
    text = "FROM busybox\n# comment\nFORM x\n"
    assert error_of(text, "ctx/Dockerfile.dev") == "ctx/Dockerfile.dev:3: unknown instruction: FORM"


def test_unknown_instruction_is_reported_upper_cased():
    assert error_of("FROM busybox\nrunn x\n") == "Dockerfile:2: unknown instruction: RUNN"


@pytest.mark.parametrize(
    "line, message",
    [
        ("RUN", "RUN requires at least one argument"),
        ("RUN   ", "RUN requires at least one argument"),
        ("RUN []", "RUN requires at least one argument"),
        ("CMD", "CMD requires at least one argument"),
        ("WORKDIR", "WORKDIR requires at least one argument"),
        ("ENV", "ENV requires at least one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("SHELL []", "SHELL requires at least one argument"),
        ("COPY", "COPY requires at least two arguments: one or more sources and a destination"),
        ("COPY onlyone", "COPY requires at least two arguments: one or more sources and a destination"),
        ('ADD ["onlyone"]', "ADD requires at least two arguments: one or more sources and a destination"),
        ("COPY --chown=1 a", "COPY requires at least two arguments: one or more sources and a destination"),
    ],
)
def test_missing_arguments(line, message):
    assert error_of(f"FROM busybox\n{line}\n") == f"Dockerfile:2: {message}"


def test_from_without_image():
    assert error_of("FROM\n") == "Dockerfile:1: FROM requires an image: FROM IMAGE [AS NAME]"


@pytest.mark.parametrize("line", ["FROM a b", "FROM a AS", "FROM a FOR b", "FROM a AS b c"])
def test_from_with_wrong_words(line):
    assert error_of(line).startswith("Dockerfile:1: FROM: expected FROM IMAGE [AS NAME]")


def test_shell_must_be_json():
    msg = error_of("FROM busybox\nSHELL /bin/bash -c\n")
    assert msg.startswith("Dockerfile:2: SHELL: SHELL requires the arguments to be in JSON form")


def test_first_instruction_must_be_from():
    msg = error_of("# hi\nRUN echo\nFROM busybox\n")
    assert msg == "Dockerfile:2: RUN: no build stage yet: the first instruction (other than ARG) must be FROM"


def test_args_may_come_before_from():
    instructions = parse("ARG BASE=busybox\nARG TAG\nFROM $BASE:$TAG\n")
    assert [(i.keyword, i.args) for i in instructions] == [
        ("ARG", ["BASE", "busybox"]),
        ("ARG", ["TAG"]),
        ("FROM", ["$BASE:$TAG"]),
    ]


def test_only_args_is_an_error():
    assert error_of("ARG A=1\n") == "Dockerfile: no FROM instruction: nothing to build"


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "# escape=`\n\n   \n"])
def test_empty_dockerfile(text):
    assert error_of(text) == "Dockerfile: file with no instructions"


@pytest.mark.parametrize(
    "line, flag",
    [
        ("COPY --bogus=1 a b", "--bogus"),
        ("ADD --from=build a b", "--from"),  # Docker's ADD has no --from
        ("RUN --cache=shared make", "--cache"),
        ("CMD --help", "--help"),
        ("ENV --x=1 A=b", "--x"),
        ("WORKDIR --p /x", "--p"),
    ],
)
def test_bad_flag(line, flag):
    keyword = line.split()[0]
    assert error_of(f"FROM busybox\n{line}\n") == f"Dockerfile:2: {keyword}: unknown flag: {flag}"


def test_from_rejects_other_flags():
    assert error_of("FROM --network=host busybox\n") == "Dockerfile:1: FROM: unknown flag: --network"


def test_duplicate_flag():
    msg = error_of("FROM busybox\nCOPY --chown=1 --chown=2 a b\n")
    assert msg == "Dockerfile:2: COPY: duplicate flag specified: --chown"


def test_arg_with_several_names_is_one_arg_each_on_the_same_line():
    instructions = parse('ARG A B=1\nFROM x\nARG abc="123 456" def\n')
    assert [(i.keyword, i.args, i.line, i.original) for i in instructions] == [
        ("ARG", ["A"], 1, "ARG A"),
        ("ARG", ["B", "1"], 1, "ARG B=1"),
        ("FROM", ["x"], 2, "FROM x"),
        ("ARG", ["abc", '"123 456"'], 3, 'ARG abc="123 456"'),
        ("ARG", ["def"], 3, "ARG def"),
    ]
    assert error_of("ARG =x\nFROM x\n") == "Dockerfile:1: ARG: ARG names can not be blank"
    assert error_of("FROM x\nARG a =x\n") == "Dockerfile:2: ARG: ARG names can not be blank"


def test_empty_volume_path():
    assert error_of('FROM busybox\nVOLUME ["/a", ""]\n') == "Dockerfile:2: VOLUME: a volume path can not be empty"


def test_error_is_an_invalid_argument_with_location():
    with pytest.raises(InvalidArgumentError) as info:
        parse("FROM busybox\nBOGUS\n", "x/Dockerfile")
    err = info.value
    assert isinstance(err, DockerfileError)
    assert (err.path, err.line, err.exit_code) == ("x/Dockerfile", 2, 125)


# --- reading files ---------------------------------------------------------------------------------------------------


def test_parse_dockerfile_file(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM busybox\nCOPY . /app\n")
    instructions, escape = parse_dockerfile_file(str(path))
    assert escape == "\\"
    assert [i.original for i in instructions] == ["FROM busybox", "COPY . /app"]


def test_parse_dockerfile_file_uses_the_path_in_errors(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM busybox\nNOPE\n")
    with pytest.raises(DockerfileError, match=rf"^{path}:2: unknown instruction: NOPE$"):
        parse_dockerfile_file(str(path))


def test_missing_dockerfile(tmp_path):
    path = tmp_path / "nope" / "Dockerfile"
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile_file(str(path))
    assert str(info.value) == f"{path}: cannot read the Dockerfile: No such file or directory"
    assert "\n" not in str(info.value)


def test_dockerfile_that_is_a_directory(tmp_path):
    with pytest.raises(DockerfileError, match="cannot read the Dockerfile: Is a directory"):
        parse_dockerfile_file(str(tmp_path))


def test_dockerfile_that_is_not_utf8(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_bytes(b"FROM busybox\nRUN echo \xff\n")
    with pytest.raises(DockerfileError, match="not valid UTF-8"):
        parse_dockerfile_file(str(path))


def test_instruction_equality_and_repr():
    a = Instruction("RUN", "RUN x", ["x"], line=2)
    assert a == Instruction("RUN", "RUN x", ["x"], False, {}, 2)
    assert a != Instruction("RUN", "RUN x", ["x"], line=3)
    assert "Instruction('RUN'" in repr(a)


# --- expand ----------------------------------------------------------------------------------------------------------

ENV = {"HOME": "/root", "NAME": "world", "EMPTY": "", "SPACED": "a b"}


@pytest.mark.parametrize(
    "word, expected",
    [
        ("plain", "plain"),
        ("$HOME", "/root"),
        ("${HOME}/bin", "/root/bin"),
        ("$HOME/bin", "/root/bin"),
        ("pre${NAME}post", "preworldpost"),
        ("$NAMEpost", ""),  # the name runs to the first non-name character
        ("$UNSET", ""),
        ("${UNSET}x", "x"),
        ("a$", "a$"),
        ("$ x", "$ x"),
        ("$/", "$/"),
        ("${UNSET:-default}", "default"),
        ("${EMPTY:-default}", "default"),
        ("${NAME:-default}", "world"),
        ("${UNSET:+alt}", ""),
        ("${EMPTY:+alt}", ""),
        ("${NAME:+alt}", "alt"),
        ("${EMPTY-default}", ""),  # without ":" an empty but set variable counts as set
        ("${UNSET-default}", "default"),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-${NAME:-x}}", "world"),
        ("${UNSET:-$HOME/x}", "/root/x"),
        ("${UNSET:-'a b'}", "a b"),
        ("${UNSET:-a\\}b}", "a}b"),
        ("${NAME:+[$HOME]}", "[/root]"),
        ("'$HOME'", "$HOME"),
        ("'a\\b'", "a\\b"),  # nothing escapes inside single quotes
        ('"$HOME"', "/root"),
        ('"${SPACED}"', "a b"),
        ('"a b"', "a b"),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        ('"a\\"b"', 'a"b'),
        ('"\\$HOME"', "$HOME"),
        ('"a\\\\b"', "a\\b"),
        ('"a\\nb"', "a\\nb"),  # other escapes are kept inside double quotes
        ("\\$HOME", "$HOME"),
        ("a\\ b", "a b"),
        ("a\\\\b", "a\\b"),
        ("a\\nb", "anb"),
        ("trailing\\", "trailing"),
        ("x'$NAME'\"$NAME\"$NAME", "x$NAMEworldworld"),
        ("$1", ""),
        ("${1}", ""),
    ],
)
def test_expand(word, expected):
    assert expand(word, ENV) == expected


def test_expand_with_backtick_escape_keeps_backslashes():
    assert expand("C:\\dir\\$NAME", ENV, "`") == "C:\\dir\\world"
    assert expand("`$NAME a` b", ENV, "`") == "$NAME a b"
    assert expand('"a`"b"', ENV, "`") == 'a"b'


def test_expand_colon_question_mark():
    assert expand("${NAME:?must be set}", ENV) == "world"
    with pytest.raises(InvalidArgumentError, match="UNSET: must be set"):
        expand("${UNSET:?must be set}", ENV)
    with pytest.raises(InvalidArgumentError, match="EMPTY: is not set"):
        expand("${EMPTY:?}", ENV)
    assert expand("${EMPTY?}", ENV) == ""


@pytest.mark.parametrize(
    "word, message",
    [
        ("'open", "matching single-quote"),
        ('"open', "matching double-quote"),
        ("${", "missing '}'"),
        ("${NAME", "missing '}'"),
        ("${NAME:-x", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:-x}", "bad substitution"),
        ("${NAME:=x}", "unsupported modifier (:=)"),
        ("${NAME:#x}", "unsupported modifier (:#)"),
        ("${NAME#x", "missing '}'"),
        ("${NAME/a", "missing '/'"),
        ("${NAME#\\x}", "invalid escape"),
    ],
)
def test_expand_errors(word, message):
    with pytest.raises(InvalidArgumentError) as info:
        expand(word, ENV)
    assert message in str(info.value)
    assert not isinstance(info.value, DockerfileError)  # the caller adds file:line


_PLAIN = st.text(alphabet=st.characters(blacklist_characters="\\'\"$", blacklist_categories=("Cs",)))
# A value written on one Dockerfile line: no control characters (newlines would end the instruction).
_ONE_LINE = st.text(alphabet=st.characters(blacklist_characters="\\'\"$", blacklist_categories=("Cs", "Cc")))


@given(_PLAIN)
def test_expand_leaves_words_without_special_characters_alone(word):
    assert expand(word, ENV) == word


@given(st.text(alphabet=st.characters(blacklist_characters="'", blacklist_categories=("Cs",))))
def test_expand_single_quotes_are_literal(text):
    assert expand(f"'{text}'", ENV) == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_expand_escaping_every_character_gives_it_back(text):
    assert expand("".join("\\" + ch for ch in text), ENV) == text


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), _ONE_LINE)
def test_env_value_round_trip(key, value):
    # Quoting a value in double quotes (escaping nothing special) survives parse + expand.
    ins = one(f'ENV {key}="{value}"')
    assert ins.args[0] == key
    assert expand(ins.args[1], {}) == value


def test_repeatable_and_boolean_flags():
    ins = parse("FROM scratch\nRUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/b --network=none true\n")[1]
    assert ins.repeated == {"mount": ["type=cache,target=/a", "type=tmpfs,target=/b"]}
    assert ins.flags == {"network": "none"} and ins.args == ["true"]
    ins = parse("FROM scratch\nCOPY --link --exclude=*.md --exclude=tmp . /app\n")[1]
    assert ins.flags == {"link": "true"} and ins.repeated == {"exclude": ["*.md", "tmp"]}
    assert parse("FROM scratch\nCOPY --link=False . /app\n")[1].flags == {"link": "false"}
    assert "--link takes true or false" in error_of("FROM scratch\nCOPY --link=maybe . /app\n")


# --- here-documents --------------------------------------------------------------------------------------------------


def test_run_heredoc_body_is_consumed_and_later_line_numbers_stay_right():
    text = "FROM busybox\nRUN <<EOF\necho one\n# not a comment here\n\nEOF\nCMD done\n"
    instructions = parse(text)
    assert [(i.keyword, i.line) for i in instructions] == [("FROM", 1), ("RUN", 2), ("CMD", 7)]
    run = instructions[1]
    assert run.args == ["<<EOF"] and run.original == "RUN <<EOF"
    assert run.heredocs == [Heredoc("EOF", "echo one\n# not a comment here\n\n", expand=True, chomp=False)]


def test_heredoc_after_a_command_and_after_flags():
    ins = parse("FROM busybox\nRUN --network=none python3 <<PY > /out\nprint(1)\nPY\n")[1]
    assert ins.flags == {"network": "none"}
    assert ins.args == ["python3 <<PY > /out"]
    assert ins.heredocs == [Heredoc("PY", "print(1)\n")]


@pytest.mark.parametrize(
    ("opener", "name", "expands"),
    [
        ("<<EOF", "EOF", True),
        ('<<"EOF"', "EOF", False),
        ("<<'EOF'", "EOF", False),
        ('<<E"O"F', "EOF", False),
        ("<<-EOF", "EOF", True),
        ("<<-'EOF'", "EOF", False),
        ("0<<EOF", "EOF", True),
    ],
)
def test_heredoc_delimiter_quoting_turns_expansion_off(opener, name, expands):
    ins = one(f"RUN cat {opener}\nbody\n{name}")
    assert ins.heredocs == [Heredoc(name, "body\n", expand=expands, chomp="-" in opener)]


def test_dash_heredoc_strips_leading_tabs_of_body_and_delimiter():
    ins = one("RUN <<-EOF\n\t\techo a\n\t  b\n  \tc\n\tEOF")
    assert ins.heredocs == [Heredoc("EOF", "echo a\n  b\n  \tc\n", chomp=True)]


def test_without_dash_an_indented_delimiter_does_not_end_the_body():
    assert error_of("FROM busybox\nRUN <<EOF\necho a\n\tEOF\n") == "Dockerfile:2: RUN: unterminated heredoc EOF"


def test_several_heredocs_in_one_instruction_read_in_order():
    text = "FROM busybox\nCOPY <<one <<two /dir/\nfirst\none\nsecond\ntwo\nRUN cat <<A <<'B'\n$x\nA\n$y\nB\nCMD x\n"
    instructions = parse(text)
    copy, run, cmd = instructions[1:]
    assert copy.args == ["<<one", "<<two", "/dir/"]
    assert copy.heredocs == [Heredoc("one", "first\n"), Heredoc("two", "second\n")]
    assert run.heredocs == [Heredoc("A", "$x\n"), Heredoc("B", "$y\n", expand=False)]
    assert cmd.line == 12


def test_heredoc_with_continued_instruction_starts_after_the_last_line():
    ins = one("RUN cat <<EOF \\\n  > /f\nbody\nEOF")
    assert ins.args == ["cat <<EOF   > /f"]
    assert ins.heredocs == [Heredoc("EOF", "body\n")]


def test_empty_heredoc_and_crlf_lines():
    instructions = parse("FROM busybox\r\nCOPY <<EOF /empty\r\nEOF\r\nRUN <<X\r\na\r\nX\r\nCMD x\r\n")
    assert instructions[1].heredocs == [Heredoc("EOF", "")]
    # The body keeps the file's line ends, as BuildKit; the delimiter matches without them.
    assert instructions[2].heredocs == [Heredoc("X", "a\r\n")]
    assert (instructions[3].keyword, instructions[3].line) == ("CMD", 7)


@pytest.mark.parametrize(
    "line",
    [
        "RUN echo '<<EOF'",  # quoted: text, not a redirection
        'RUN echo "a <<EOF"',
        "RUN cat <<<word",  # a here-string
        "RUN echo a<<b",  # not a word of its own
        "ENV A=<<EOF",  # only RUN, COPY and ADD take here-documents
        "CMD cat <<EOF",
    ],
)
def test_what_is_not_a_heredoc(line):
    ins = one(line)
    assert ins.heredocs == []


def test_onbuild_run_takes_its_heredoc():
    instructions = parse("FROM busybox\nONBUILD RUN <<EOF\necho hi\nEOF\nCMD x\n")
    assert instructions[1].heredocs == [Heredoc("EOF", "echo hi\n")]
    assert instructions[2].line == 5


def test_unterminated_heredoc_names_the_instruction_line():
    assert error_of("FROM busybox\n\nCOPY <<A <<B /d/\na\nA\nb\n") == "Dockerfile:3: COPY: unterminated heredoc B"


def test_heredoc_body_expansion_keeps_quotes_and_honours_escapes():
    env = {"A": "1", "EMPTY": ""}
    assert expand_heredoc('x="$A" \'${A}\' \\$A ${EMPTY:-d} $NONE.\n', env) == "x=\"1\" '1' $A d .\n"


def test_read_directives_reports_syntax_and_check():
    text = "# syntax=docker/dockerfile:1.7\n# check=skip=all\nFROM busybox\n"
    assert read_directives(text) == {"syntax": "docker/dockerfile:1.7", "check": "skip=all"}
    assert read_directives("FROM busybox\n# syntax=x\n") == {}


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("RUN <<  EOF", ["EOF"]),  # blanks after << belong to the opener, as in BuildKit's lexer
        ("RUN <<  EOF  > foo", ["EOF"]),
        ("RUN <<- EOF", []),  # but not after <<-
        ("RUN << -EOF", ["-EOF"]),
        ("RUN 4<<EOF <<EOF2", ["EOF", "EOF2"]),
        ("RUN <<$EOF", ["$EOF"]),
        ("RUN <<'one two'", ["one two"]),
        ("RUN <<eo\\'f", ["eo'f"]),
    ],
)
def test_heredoc_openers_as_buildkit_reads_them(line, names):
    body = "".join(f"{name}\n" for name in names)
    ins = one(f"{line}\n{body}".rstrip("\n"))
    assert [h.name for h in ins.heredocs] == names


def test_heredoc_quote_rules_for_expansion():
    # A quote removed from the delimiter (and only then) turns expansion off.
    assert one("RUN <<eo\\'f\neo'f").heredocs[0].expand is True
    assert one("RUN <<'e'o\\'f\neo'f").heredocs[0].expand is False
    assert one("RUN <<eo'f'\neof").heredocs[0].expand is False


def test_copy_with_blanks_after_the_opener_keeps_one_source_per_heredoc():
    ins = one("COPY <<  A   <<B /dest/\na\nA\nb\nB")
    assert ins.args == ["<<A", "<<B", "/dest/"]
    assert [h.content for h in ins.heredocs] == ["a\n", "b\n"]


def test_an_escaped_escape_character_at_the_end_does_not_continue_the_line():
    instructions = parse("FROM x\nENV C trailing\\\\backslash\\\\\nENV D next\nENV E a\\\n\\\nb\n")
    assert [i.args for i in instructions[1:]] == [["C", "trailing\\\\backslash\\\\"], ["D", "next"], ["E", "ab"]]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("${F#*/}", "home/tux/book.tar.bz2"),
        ("${F##*/}", "book.tar.bz2"),
        ("${F%.*}", "/home/tux/book.tar"),
        ("${F%%.*}", "/home/tux/book"),
        ("${F#/home/}", "tux/book.tar.bz2"),
        ("${F%.gz}", "/home/tux/book.tar.bz2"),  # no match: unchanged
        ("${F/tux/wilber}", "/home/wilber/book.tar.bz2"),
        ("${V//./-}", "1-2-3"),
        ("${V/./}", "12.3"),
        ("${V/?/x}", "x.2.3"),
        ("${STAR#a\\*}", "b"),  # an escaped * is a star
        ("${UNSET%x}", ""),
        ("${F##*/}-$V", "book.tar.bz2-1.2.3"),
    ],
)
def test_expand_pattern_modifiers_as_buildkit(word, expected):
    env = {"F": "/home/tux/book.tar.bz2", "V": "1.2.3", "STAR": "a*b"}
    assert expand(word, env) == expected
