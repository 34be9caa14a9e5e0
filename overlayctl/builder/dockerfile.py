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


def _read_directives(lines: list[str], path: str) -> dict[str, str]:
    """The parser directives at the top of the file, by lower-case name."""
    found: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        match = _DIRECTIVE.fullmatch(raw.lstrip())
        # The first line that is not a known directive ends the block for good:
        # a directive after a comment or an instruction is just a comment.
        if match is None or match[1].lower() not in _KNOWN_DIRECTIVES:
            break
        name, value = match[1].lower(), match[2]
        if name in found:
            raise DockerfileError(path, number, f"only one {name} parser directive can be used")
        found[name] = value
        if name == "escape" and value not in ("\\", "`"):
            raise DockerfileError(path, number, f"invalid escape directive {value!r}: use \\ or `")
    return found


def read_directives(text: str, path: str = "Dockerfile") -> dict[str, str]:
    """The parser directives (escape, syntax, check) at the top of Dockerfile text."""
    return _read_directives(_split_lines(text), path)


def _split_lines(text: str) -> list[str]:
    return [line[:-1] if line.endswith("\r") else line for line in _raw_lines(text)]


def _raw_lines(text: str) -> list[str]:
    return (text[1:] if text.startswith("\ufeff") else text).split("\n")


def _logical_lines(
    lines: list[str], written: list[str], escape: str, path: str
) -> list[tuple[int, str, list[Heredoc]]]:
    """Join continued lines into (first line number, text, here-documents),
    skipping comments; the bodies of an instruction's here-documents are the
    lines after it, consumed here so that they are not read as instructions
    (`written`: the same lines with their carriage returns, for the bodies)."""
    # As BuildKit: an escape character right after another one is not a
    # continuation (`C:\\` ends its line), even if that one is escaped itself.
    continuation = re.compile("(?<!" + re.escape(escape) + ")" + re.escape(escape) + r"[ \t]*$")

    def cut(text: str) -> tuple[str, bool]:
        joined, count = continuation.subn("", text)
        return joined, count > 0

    result: list[tuple[int, str, list[Heredoc]]] = []
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
        if not text.strip():
            continue
        heredocs: list[Heredoc] = []
        if _takes_heredocs(text):
            for heredoc in heredocs_of(text):
                i = _read_heredoc_body(heredoc, lines, written, i)
                if i < 0:
                    keyword = text.split(None, 1)[0].upper()
                    raise DockerfileError(path, start, f"unterminated heredoc {heredoc.name}", keyword)
                heredocs.append(heredoc)
        result.append((start, text, heredocs))
    return result


# ---------------------------------------------------------------------------
# Here-documents (BuildKit's Dockerfile frontend 1.4+)

# Only these take here-documents, as in BuildKit (ONBUILD too, for them).
_HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})
# A word that opens a here-document: an optional fd, "<<", "-" to strip
# leading tabs, then the delimiter word (which may be quoted); "<<<" is a
# here-string, not a here-document.
_HEREDOC_WORD = re.compile(r"(\d*)<<(-?)\s*([^<]*)")


def _takes_heredocs(text: str) -> bool:
    words = text.split(None, 2)
    keyword = words[0].upper()
    if keyword == "ONBUILD" and len(words) > 1:
        keyword = words[1].upper()
    return keyword in _HEREDOC_KEYWORDS


def _raw_words(text: str) -> list[str]:
    """Words as a shell splits them, quotes and backslashes kept; BuildKit
    looks for here-documents this way whatever the escape directive says."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    i, n = 0, len(text)
    started = False
    while i < n:
        ch = text[i]
        i += 1
        if not quote and ch.isspace():
            if started:
                words.append("".join(word))
                word, started = [], False
            continue
        started = True
        word.append(ch)
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i < n:
                word.append(text[i])
                i += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "\\" and i < n:
            word.append(text[i])
            i += 1
        elif ch == "<" and text.startswith("<", i):
            # As BuildKit's lexer: blanks right after "<<" stay in the word,
            # so `<<  EOF` opens a here-document named EOF (`<<- EOF` does not).
            word.append("<")
            i += 1
            while i < n and text[i] in " \t":
                word.append(text[i])
                i += 1
    if started:
        words.append("".join(word))
    return words


def _unquote(word: str) -> str | None:
    """Quote removal on one word, as sh does on a here-document's delimiter;
    None if the word is not one word (unbalanced quotes, blanks)."""
    out: list[str] = []
    quote = ""
    i, n = 0, len(word)
    while i < n:
        ch = word[i]
        i += 1
        if quote == "'":
            if ch == "'":
                quote = ""
            else:
                out.append(ch)
        elif quote == '"':
            if ch == '"':
                quote = ""
            elif ch == "\\" and i < n and word[i] in '"\\$`':
                out.append(word[i])
                i += 1
            else:
                out.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            if i < n:
                out.append(word[i])
                i += 1
        elif ch.isspace():
            return None
        else:
            out.append(ch)
    return None if quote else "".join(out)


def parse_heredoc_word(word: str) -> Heredoc | None:
    """The here-document a word such as `<<EOF`, `<<-EOF` or `<<"EOF"` opens
    (with no content yet), or None if the word opens none."""
    match = _HEREDOC_WORD.fullmatch(word)
    if match is None or not match[3]:
        return None
    name = _unquote(match[3])
    if not name:
        return None
    # As BuildKit: any quote taken away from the delimiter turns expansion off.
    removed = sum(match[3].count(q) for q in "'\"") != sum(name.count(q) for q in "'\"")
    return Heredoc(name, "", expand=not removed, chomp=match[2] == "-")


def heredocs_of(text: str) -> list[Heredoc]:
    """The here-documents an instruction's text opens, in order, without content."""
    found = []
    for word in _raw_words(text):
        heredoc = parse_heredoc_word(word)
        if heredoc is not None:
            found.append(heredoc)
    return found


def _read_heredoc_body(heredoc: Heredoc, lines: list[str], written: list[str], i: int) -> int:
    """Fill heredoc.content from lines[i:] up to its delimiter line; return the
    index after that line, or -1 if the file ends first. The body keeps the
    lines as written (a CRLF file gives CRLF bodies, as BuildKit);
    the delimiter is matched without the line's end."""
    body: list[str] = []
    while i < len(lines):
        line, text = lines[i], written[i]
        i += 1
        if heredoc.chomp:
            line, text = line.lstrip("\t"), text.lstrip("\t")
        if line == heredoc.name:
            heredoc.content = "".join(piece + "\n" for piece in body)
            return i
        body.append(text)
    return -1


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
        if array is None:
            # `<<  EOF` is one here-document opener (see _raw_words): one source.
            if "<<" in rest:
                args = _BLANKS.split(re.sub(r"(^|[ \t])(\d*<<)[ \t]+", r"\1\2", rest))
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


def _parse_instruction(number: int, text: str, path: str, escape: str, heredocs: list[Heredoc]) -> Instruction:
    text = text.strip()
    parts = _BLANKS.split(text, maxsplit=1)
    word = parts[0]
    keyword = word.upper()
    if keyword not in KEYWORDS:
        raise DockerfileError(path, number, f"unknown instruction: {keyword}")
    flag_words, rest = _extract_flags(parts[1] if len(parts) > 1 else "")
    flags, repeated = _parse_flags(flag_words, keyword, path, number)
    args, json_form = _Shape(keyword, path, number, escape).parse(rest)
    return Instruction(keyword, keyword + text[len(word) :], args, json_form, flags, number, repeated, heredocs)


def _instructions(number: int, text: str, path: str, escape: str, heredocs: list[Heredoc]) -> list[Instruction]:
    """The instructions one logical line holds: one, except `ARG a b=c`,
    which BuildKit takes as several ARGs and which is kept here as one ARG
    instruction per name (on the same line)."""
    words = _BLANKS.split(text.strip(), maxsplit=1)
    if words[0].upper() == "ARG" and len(words) > 1:
        names = _split_words(words[1], escape)
        if len(names) > 1:
            return [_parse_instruction(number, f"ARG {name}", path, escape, []) for name in names]
    return [_parse_instruction(number, text, path, escape, heredocs)]


def _parse(text: str, path: str) -> tuple[list[Instruction], str]:
    lines = _split_lines(text)
    escape = _read_directives(lines, path).get("escape", "\\")
    instructions = [
        ins
        for number, line, heredocs in _logical_lines(lines, _raw_lines(text), escape, path)
        for ins in _instructions(number, line, path, escape, heredocs)
    ]
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


def parse_dockerfile_file(path: str, name: str | None = None) -> tuple[list[Instruction], str]:
    """Read and parse a Dockerfile; return its instructions and its escape
    character. `name` is what error messages call it (default: path)."""
    shown = name or path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DockerfileError(shown, None, f"cannot read the Dockerfile: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DockerfileError(shown, None, f"not valid UTF-8 text (byte {e.start})") from None
    return _parse(text, shown)


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

    def process(self, stop: str = "", raw_escapes: bool = False) -> str:
        """Process up to `stop` (consumed) or the end of the word; with
        `raw_escapes` an escape stays in front of what it escapes (a pattern
        needs it to tell `\\*` from `*`)."""
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
                    if raw_escapes and self.peek():
                        out.append(ch)
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
        if op in ("#", "%"):
            pattern = self.process("}", raw_escapes=True)
            longest = pattern.startswith(op)
            pattern = pattern[1:] if longest else pattern
            return _trim(self.env.get(name, ""), pattern, op == "%", longest, self)
        if op == "/":
            every = self.peek() == "/"
            self.pos += every
            pattern = self.process("/", raw_escapes=True)
            replacement = self.process("}", raw_escapes=True)
            value = self.env.get(name, "")
            matcher = _pattern(pattern, True, self)
            return matcher.sub(lambda _m: replacement, value, count=0 if every else 1)
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


def _pattern(pattern: str, longest: bool, where: _Expander) -> re.Pattern[str]:
    """A ${...} pattern as a regular expression, as BuildKit reads it:
    `*` any run (shortest unless `longest`), `?` one character, `\\*`,
    `\\?` and `\\\\` themselves, `\\}` and `\\/` the bare character; no
    bracket classes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if longest else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\" and i < len(pattern):
            nxt = pattern[i]
            i += 1
            if nxt not in "*?\\}/":
                raise where.fail(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim(value: str, pattern: str, suffix: bool, longest: bool, where: _Expander) -> str:
    """${VAR#p}, ${VAR##p} (prefix) and ${VAR%p}, ${VAR%%p} (suffix)."""
    if suffix:
        # The shortest match at the right is the shortest at the left of
        # the reversed value, with the pattern reversed (its escapes kept).
        pieces = re.findall(r"\\.|.", pattern, flags=re.S)
        reversed_pattern = "".join(reversed(pieces))
        return _trim(value[::-1], reversed_pattern, False, longest, where)[::-1]
    match = _pattern(pattern, longest, where).match(value)
    return value[match.end() :] if match else value


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables in one raw word and remove its quotes and escapes, as Docker does.

    Raises InvalidArgumentError (with no file:line; the caller knows the
    instruction) on an unterminated quote or a malformed ${...}.
    """
    return _Expander(word, env, escape).process()


def expand_heredoc(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables in the body of a COPY/ADD here-document, as BuildKit does.

    Unlike `expand`, quotes are text here (`"$A"` keeps its quotes); the
    escape character still protects the next character, so `\\$A` is `$A`.
    """
    expander = _Expander(text, env, escape)
    out: list[str] = []
    while expander.pos < len(text):
        ch = expander.peek()
        if ch == "$":
            out.append(expander.dollar())
            continue
        expander.pos += 1
        if ch == escape:
            ch = expander.take()
        out.append(ch)
    return "".join(out)


def json_or_shell(rest: str) -> tuple[list[str], bool]:
    """A command as Docker reads one that may be either form (HEALTHCHECK's
    after CMD): (the JSON array's strings, True) or ([rest], False).
    ValueError for a JSON array of something other than strings."""
    array = _json_strings(rest)
    return (array, True) if array is not None else ([rest.strip()], False)
