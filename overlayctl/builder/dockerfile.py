"""Dockerfiles parsed to Docker's grammar: a list of instructions, as data.

The parser does no variable expansion. Where Docker expands words later (ENV
and LABEL keys and values, ARG defaults, COPY sources, FROM images...) the
args keep the words as written, quotes and `$VAR` included, because their
values are only known while building; `expand()` does Docker's shell-word
processing on one such word once the builder knows the environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from overlayctl.errors import InvalidArgumentError

KEYWORDS = frozenset(
    {
        "FROM",
        "RUN",
        "CMD",
        "ENTRYPOINT",
        "ENV",
        "WORKDIR",
        "USER",
        "LABEL",
        "ARG",
        "EXPOSE",
        "VOLUME",
        "SHELL",
        "COPY",
        "ADD",
        "MAINTAINER",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "ONBUILD",
    }
)

# The --flags each instruction accepts (BuildKit's Dockerfile frontend 1.x);
# any other flag is an error, as in Docker. ADD has no --from in Docker: it
# only copies from the context or a URL.
_FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"network", "mount", "security"}),
    "COPY": frozenset({"chown", "chmod", "from", "link", "exclude", "parents"}),
    "ADD": frozenset({"chown", "chmod", "link", "exclude", "checksum", "keep-git-dir"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
# Flags that may be given more than once; their values are kept in order in
# `Instruction.repeated`, not in `Instruction.flags`.
_REPEATABLE = frozenset({"mount", "exclude"})
# Flags that may stand alone (`COPY --link`); their bare form means "true".
_BOOLEAN = frozenset({"link", "parents", "keep-git-dir"})

# Directives are only recognised at the very top of the file; "syntax" and
# "check" are known (so they do not end the directive block) but ignored here.
_DIRECTIVE = re.compile(r"#[ \t\f\r]*([a-zA-Z][a-zA-Z0-9]*)[ \t\f\r]*=[ \t\f\r]*(.+?)[ \t\f\r]*")
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})

# Docker splits instruction words on these (no newline: lines are joined by then).
_BLANKS = re.compile(r"[ \t\v\f\r]+")


class DockerfileError(InvalidArgumentError):
    """A Dockerfile that cannot be parsed or read; the message starts with `path:line:`."""

    def __init__(self, path: str, line: int | None, what: str, keyword: str | None = None) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {keyword}: {what}" if keyword else f"{where}: {what}")
        self.path = path
        self.line = line
        self.keyword = keyword


class Instruction:
    """One Dockerfile instruction; `args` hold raw words where Docker expands later.

    `original` is the instruction as written (continuation lines joined, keyword
    upper-cased), which is what a build prints as "Step 2/4 : COPY . /app".
    """

    __slots__ = ("keyword", "original", "args", "json_form", "flags", "line", "repeated", "heredocs")

    def __init__(
        self,
        keyword: str,
        original: str,
        args: list[str],
        json_form: bool = False,
        flags: dict[str, str] | None = None,
        line: int = 0,
        repeated: dict[str, list[str]] | None = None,
        heredocs: list[Heredoc] | None = None,
    ) -> None:
        self.keyword = keyword
        self.original = original
        self.args = args
        self.json_form = json_form
        # Flags given once, by name without the dashes; a bare boolean flag
        # (`--link`) has the value "true".
        self.flags = flags if flags is not None else {}
        self.line = line
        # Flags that may repeat (`--mount`, `--exclude`), every value in order.
        self.repeated = repeated if repeated is not None else {}
        # The here-documents the instruction's words name (`RUN <<EOF`), in order.
        self.heredocs = heredocs if heredocs is not None else []

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instruction):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable fields: equal but unhashable

    def __repr__(self) -> str:
        return (
            f"Instruction({self.keyword!r}, {self.original!r}, {self.args!r}, json_form={self.json_form!r}, "
            f"flags={self.flags!r}, line={self.line!r}, repeated={self.repeated!r}, heredocs={self.heredocs!r})"
        )


class Heredoc:
    """A here-document (`<<EOF` ... `EOF`) an instruction carries.

    `expand` is false when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`):
    then `$VAR` stays as written. `chomp` is true for `<<-`, whose body lines
    lose their leading tabs (already removed from `content`)."""

    __slots__ = ("name", "content", "expand", "chomp")

    def __init__(self, name: str, content: str, expand: bool = True, chomp: bool = False) -> None:
        self.name = name
        self.content = content
        self.expand = expand
        self.chomp = chomp

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Heredoc):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Heredoc({self.name!r}, {self.content!r}, expand={self.expand!r}, chomp={self.chomp!r})"


# ---------------------------------------------------------------------------
# Lines: directives, comments, continuations


def _read_directives(lines: list[str], path: str) -> str:
    """Return the escape character set by the directives at the top of the file."""
    escape = "\\"
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        match = _DIRECTIVE.fullmatch(raw.lstrip())
        # The first line that is not a known directive ends the block for good:
        # a directive after a comment or an instruction is just a comment.
        if match is None or match[1].lower() not in _KNOWN_DIRECTIVES:
            break
        name, value = match[1].lower(), match[2]
        if name in seen:
            raise DockerfileError(path, number, f"only one {name} parser directive can be used")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(path, number, f"invalid escape directive {value!r}: use \\ or `")
            escape = value
    return escape


def _logical_lines(lines: list[str], escape: str) -> list[tuple[int, str]]:
    """Join continued lines into (first line number, text) pairs, skipping comments."""
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")

    def cut(text: str) -> tuple[str, bool]:
        joined, count = continuation.subn("", text)
        return joined, count > 0

    result: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        start = i + 1
        first = lines[i].lstrip()
        i += 1
        if not first or first.startswith("#"):
            continue
        text, more = cut(first)
        while more and i < len(lines):
            raw = lines[i]
            i += 1
            # Docker drops comment and blank lines inside a continued
            # instruction instead of letting them end it.
            stripped = raw.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            # Continuation lines keep their indentation: "RUN a \" + "    && b" is "RUN a     && b".
            piece, more = cut(raw)
            text += piece
        if text.strip():
            result.append((start, text))
    return result


# ---------------------------------------------------------------------------
# Words


def _extract_flags(rest: str) -> tuple[list[str], str]:
    """Split leading `--flag` words off `rest`; return (flag words, remaining text).

    Flag words may be quoted and backslash-escaped (always backslash, whatever
    the escape directive says); a bare "--" ends the flags.
    """
    flags: list[str] = []
    pos = 0
    n = len(rest)
    while True:
        while pos < n and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            return flags, rest[pos:].strip()
        word: list[str] = []
        quote = ""
        while pos < n and (quote or not rest[pos].isspace()):
            ch = rest[pos]
            pos += 1
            if quote and ch == quote:
                quote = ""
            elif not quote and ch in "'\"":
                quote = ch
            elif ch == "\\":
                if pos < n:
                    word.append(rest[pos])
                    pos += 1
            else:
                word.append(ch)
        text = "".join(word)
        if text == "--":
            return flags, rest[pos:].strip()
        flags.append(text)


def _parse_flags(words: list[str], keyword: str, path: str, line: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The flag words as (flags given once, repeatable flags' values)."""
    allowed = _FLAGS.get(keyword, frozenset())
    flags: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for word in words:
        name, equals, value = word[2:].partition("=")
        if name not in allowed:
            raise DockerfileError(path, line, f"unknown flag: --{name}", keyword)
        if name in _REPEATABLE:
            repeated.setdefault(name, []).append(value)
            continue
        if name in flags:
            raise DockerfileError(path, line, f"duplicate flag specified: --{name}", keyword)
        if name in _BOOLEAN:
            if not equals:
                value = "true"
            elif value.lower() not in ("true", "false"):
                raise DockerfileError(path, line, f"--{name} takes true or false, not {value!r}", keyword)
            value = value.lower()
        flags[name] = value
    return flags, repeated


def _split_words(rest: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes and not escaped, keeping each word raw.

    Quotes and escape characters stay in the words (`expand()` removes them
    later); an escape character at the very end of the text is dropped.
    """
    words: list[str] = []
    word: list[str] = []
    quote = ""
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        i += 1
        if not quote and ch.isspace():
            if word:
                words.append("".join(word))
                word = []
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        # The escape character protects the next character, except inside single quotes.
        if ch == escape and quote != "'":
            if i == n:
                continue
            word.append(ch)
            ch = rest[i]
            i += 1
        word.append(ch)
    if word:
        words.append("".join(word))
    return words


def _json_strings(rest: str) -> list[str] | None:
    """The JSON array of strings `rest` is, or None when it is not JSON (shell form).

    A JSON array holding something other than strings is an error, not shell form.
    """
    text = rest.strip()
    if not text.startswith("["):
        return None

    def no_constants(name: str) -> object:
        # Python's json accepts NaN/Infinity; Go's (Docker's) does not.
        raise ValueError(name)

    try:
        value = json.loads(text, parse_constant=no_constants)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise ValueError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


# ---------------------------------------------------------------------------
# Per-instruction argument shapes


class _Shape:
    """What one instruction's arguments parse to: (args, json_form)."""

    def __init__(self, keyword: str, path: str, line: int, escape: str) -> None:
        self.keyword = keyword
        self.path = path
        self.line = line
        self.escape = escape

    def error(self, what: str) -> DockerfileError:
        return DockerfileError(self.path, self.line, what, self.keyword)

    def missing(self, what: str = "at least one argument") -> DockerfileError:
        return DockerfileError(self.path, self.line, f"{self.keyword} requires {what}")

    def json_or_none(self, rest: str) -> list[str] | None:
        try:
            return _json_strings(rest)
        except ValueError as e:
            raise self.error(str(e)) from None

    def parse(self, rest: str) -> tuple[list[str], bool]:
        if not rest:
            if self.keyword in ("COPY", "ADD"):
                raise self.missing("at least two arguments: one or more sources and a destination")
            if self.keyword == "FROM":
                raise self.missing("an image: FROM IMAGE [AS NAME]")
            raise self.missing()
        shape = _SHAPES.get(self.keyword)
        if shape is None:
            # WORKDIR, USER, STOPSIGNAL, MAINTAINER, HEALTHCHECK, ONBUILD: the rest of the line.
            return [rest], False
        return shape(self, rest)

    def _from(self, rest: str) -> tuple[list[str], bool]:
        words = _BLANKS.split(rest)
        if len(words) == 3 and words[1].upper() == "AS":
            return [words[0], "AS", words[2]], False
        if len(words) != 1:
            raise self.error(f"expected FROM IMAGE [AS NAME], got {rest!r}")
        return words, False

    def _exec_or_shell(self, rest: str) -> tuple[list[str], bool]:
        array = self.json_or_none(rest)
        if array is None:
            return [rest], False
        return array, True

    def _run(self, rest: str) -> tuple[list[str], bool]:
        args, json_form = self._exec_or_shell(rest)
        if not args:
            raise self.missing()
        return args, json_form

    def _shell(self, rest: str) -> tuple[list[str], bool]:
        array = self.json_or_none(rest)
        if array is None:
            raise self.error('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]')
        if not array:
            raise self.missing()
        return array, True

    def _copy(self, rest: str) -> tuple[list[str], bool]:
        array = self.json_or_none(rest)
        args = array if array is not None else _BLANKS.split(rest)
        if len(args) < 2:
            raise self.missing("at least two arguments: one or more sources and a destination")
        return args, array is not None

    def _volume(self, rest: str) -> tuple[list[str], bool]:
        array = self.json_or_none(rest)
        args = array if array is not None else _BLANKS.split(rest)
        if not args:
            raise self.missing()
        if any(not arg.strip() for arg in args):
            raise self.error("a volume path can not be empty")
        return args, array is not None

    def _expose(self, rest: str) -> tuple[list[str], bool]:
        return _BLANKS.split(rest), False

    def _env(self, rest: str) -> tuple[list[str], bool]:
        return self._key_values(rest), False

    def _key_values(self, rest: str) -> list[str]:
        words = _split_words(rest, self.escape)
        if not words:
            raise self.missing()
        # Docker tells the two forms apart by whether the first word has an "=":
        # `ENV KEY value with spaces` (one pair) or `ENV A=1 B="two words"`.
        if "=" not in words[0]:
            parts = _BLANKS.split(rest, maxsplit=1)
            if len(parts) < 2:
                raise self.error(f"{parts[0]} has no value (write {self.keyword} {parts[0]}=VALUE)")
            return parts
        args: list[str] = []
        for word in words:
            key, eq, value = word.partition("=")
            if not eq:
                raise self.error(f"syntax error: can't find = in {word!r}; must be of the form NAME=VALUE")
            if not key:
                raise self.error(f"{self.keyword} names can not be blank")
            args += [key, value]
        return args

    def _arg(self, rest: str) -> tuple[list[str], bool]:
        words = _split_words(rest, self.escape)
        if len(words) != 1:
            raise self.error(f"expected one NAME[=DEFAULT] per ARG, got {rest!r}")
        name, eq, default = words[0].partition("=")
        if not name:
            raise self.error("ARG names can not be blank")
        return ([name, default] if eq else [name]), False


_SHAPES: dict[str, Callable[[_Shape, str], tuple[list[str], bool]]] = {
    "FROM": _Shape._from,
    "RUN": _Shape._run,
    "CMD": _Shape._exec_or_shell,
    "ENTRYPOINT": _Shape._exec_or_shell,
    "SHELL": _Shape._shell,
    "COPY": _Shape._copy,
    "ADD": _Shape._copy,
    "VOLUME": _Shape._volume,
    "EXPOSE": _Shape._expose,
    "ENV": _Shape._env,
    "LABEL": _Shape._env,
    "ARG": _Shape._arg,
}


# ---------------------------------------------------------------------------
# Public API


def _parse_instruction(number: int, text: str, path: str, escape: str) -> Instruction:
    text = text.strip()
    parts = _BLANKS.split(text, maxsplit=1)
    word = parts[0]
    keyword = word.upper()
    if keyword not in KEYWORDS:
        raise DockerfileError(path, number, f"unknown instruction: {keyword}")
    flag_words, rest = _extract_flags(parts[1] if len(parts) > 1 else "")
    flags, repeated = _parse_flags(flag_words, keyword, path, number)
    args, json_form = _Shape(keyword, path, number, escape).parse(rest)
    return Instruction(keyword, keyword + text[len(word) :], args, json_form, flags, number, repeated)


def _parse(text: str, path: str) -> tuple[list[Instruction], str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    escape = _read_directives(lines, path)
    instructions = [_parse_instruction(n, t, path, escape) for n, t in _logical_lines(lines, escape)]
    if not instructions:
        raise DockerfileError(path, None, "file with no instructions")
    # Only ARGs (global build arguments) may come before the first FROM.
    first = next((ins for ins in instructions if ins.keyword != "ARG"), None)
    if first is None:
        raise DockerfileError(path, None, "no FROM instruction: nothing to build")
    if first.keyword != "FROM":
        raise DockerfileError(
            path, first.line, "no build stage yet: the first instruction (other than ARG) must be FROM", first.keyword
        )
    return instructions, escape


def parse(text: str, path: str = "Dockerfile") -> list[Instruction]:
    """Parse Dockerfile text; `path` only names the file in error messages."""
    return _parse(text, path)[0]


def parse_dockerfile_file(path: str) -> tuple[list[Instruction], str]:
    """Read and parse a Dockerfile; return its instructions and its escape character."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DockerfileError(path, None, f"cannot read the Dockerfile: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DockerfileError(path, None, f"not valid UTF-8 text (byte {e.start})") from None
    return _parse(text, path)


# ---------------------------------------------------------------------------
# Word expansion


class _Expander:
    """Docker's shell-word processing of one word (quotes, escapes, $VAR, ${VAR:-x})."""

    __slots__ = ("word", "pos", "env", "escape")

    def __init__(self, word: str, env: Mapping[str, str], escape: str) -> None:
        self.word = word
        self.pos = 0
        self.env = env
        self.escape = escape

    def fail(self, what: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"{what} in {self.word!r}")

    def peek(self) -> str:
        return self.word[self.pos] if self.pos < len(self.word) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += len(ch)
        return ch

    def process(self, stop: str = "") -> str:
        """Process up to `stop` (consumed) or the end of the word."""
        out: list[str] = []
        while self.pos < len(self.word):
            ch = self.peek()
            if stop and ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "'":
                out.append(self.single_quoted())
            elif ch == '"':
                out.append(self.double_quoted())
            elif ch == "$":
                out.append(self.dollar())
            else:
                self.pos += 1
                if ch == self.escape:
                    ch = self.take()  # "" for an escape character ending the word: dropped
                out.append(ch)
        if stop:
            raise self.fail(f"syntax error: missing {stop!r}")
        return "".join(out)

    def single_quoted(self) -> str:
        # As in sh: nothing is special inside single quotes, not even the escape character.
        self.pos += 1
        end = self.word.find("'", self.pos)
        if end < 0:
            raise self.fail("unexpected end of statement while looking for matching single-quote")
        text = self.word[self.pos : end]
        self.pos = end + 1
        return text

    def double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise self.fail("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            # Inside double quotes the escape character only escapes " $ and itself;
            # before anything else it is kept, as sh does with backslash.
            if ch == self.escape and self.peek() in ('"', "$", self.escape):
                ch = self.take()
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        if self.peek().isdecimal():
            while self.peek().isdecimal():
                self.pos += 1
        elif self.peek() and self.peek() in "@*#?-$!":
            self.pos += 1
        else:
            while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
                self.pos += 1
        return self.word[start : self.pos]

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        if not self.peek():
            raise self.fail("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise self.fail("syntax error: bad substitution")
        name = self.name()
        op = self.take()
        if not op:
            raise self.fail("syntax error: missing '}'")
        if op == "}":
            return self.env.get(name, "")
        if op == ":":
            op += self.take()
        if op not in (":-", ":+", ":?", "-", "+", "?"):
            raise self.fail(f"unsupported modifier ({op or 'end of word'}) in substitution")
        word = self.process("}")
        value = self.env.get(name, "")
        # With a colon an empty value counts as unset, as in sh.
        present = bool(value) if op.startswith(":") else name in self.env
        if op.endswith("-"):
            return value if present else word
        if op.endswith("+"):
            return word if present else ""
        if not present:
            raise self.fail(f"{name}: {word or 'is not set'}")
        return value


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables in one raw word and remove its quotes and escapes, as Docker does.

    Raises InvalidArgumentError (with no file:line; the caller knows the
    instruction) on an unterminated quote or a malformed ${...}.
    """
    return _Expander(word, env, escape).process()


def json_or_shell(rest: str) -> tuple[list[str], bool]:
    """A command as Docker reads one that may be either form (HEALTHCHECK's
    after CMD): (the JSON array's strings, True) or ([rest], False).
    ValueError for a JSON array of something other than strings."""
    array = _json_strings(rest)
    return (array, True) if array is not None else ([rest.strip()], False)
