""".dockerignore: which files of a build context a build leaves out.

Docker's semantics (moby/patternmatcher): one pattern a line, cleaned like
Go's filepath.Clean; Go filepath.Match syntax plus `**` for any number of
directories; a pattern that matches a parent directory matches everything
under it; `!` re-includes; the last matching line wins.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable

from overlayctl.errors import InvalidArgumentError

# How a pattern is matched. Docker compares plain patterns as strings and
# only uses a regular expression when it must; the string forms are not quite
# the regexp's meaning ("**foo" matches "barfoo"), so they are kept as is.
_EXACT, _PREFIX, _SUFFIX, _REGEX = "exact", "prefix", "suffix", "regex"


class _BadPattern(ValueError):
    pass


def _go_clean(path: str) -> str:
    """Go's filepath.Clean on a "/"-separated path."""
    cleaned = posixpath.normpath(path)
    # POSIX lets normpath keep exactly two leading slashes; Go reduces them to one.
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _class(pattern: str, i: int) -> tuple[str, int]:
    """Translate the character class starting after the "[" at pattern[i - 1].

    Follows Go's filepath.Match: "^" negates ("!" is an ordinary character),
    "\\" escapes, ranges are lo-hi, and "-" or "]" must be escaped unless "]"
    closes a non-empty class. Returns (regexp, index after the "]").
    """
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    ranges = 0

    def char(i: int) -> tuple[str, int]:
        if i >= len(pattern) or pattern[i] in "-]":
            raise _BadPattern
        if pattern[i] == "\\":
            i += 1
            if i >= len(pattern):
                raise _BadPattern
        # Go also needs something after the character: an unclosed class is bad.
        if i + 1 >= len(pattern):
            raise _BadPattern
        return pattern[i], i + 1

    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            out.append("]")
            return "".join(out), i + 1
        lo, i = char(i)
        hi = lo
        if pattern[i] == "-":
            hi, i = char(i + 1)
        if hi < lo:
            raise _BadPattern
        out.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
        ranges += 1


def _translate(pattern: str) -> tuple[str, str]:
    """Return (kind, regexp) for a cleaned pattern, rejecting what Go's filepath.Match rejects."""
    kind = _EXACT
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**", i):
            at_start = i == 0
            i += 2
            if i < n and pattern[i] == "/":
                i += 1
            if i < n:
                out.append("(?:.*/)?")  # zero or more whole directories
                kind = _REGEX
            elif kind == _EXACT:
                kind = _PREFIX  # "dir/**": anything starting with "dir/"
            else:
                out.append(".*")
                kind = _REGEX
            if at_start:
                kind = _SUFFIX  # "**/name" (or "**name"); a later wildcard makes it a regexp again
            continue
        i += 1
        if ch == "*":
            out.append("[^/]*")
            kind = _REGEX
        elif ch == "?":
            out.append("[^/]")
            kind = _REGEX
        elif ch == "\\":
            if i >= n:
                raise _BadPattern
            out.append(re.escape(pattern[i]))
            i += 1
            kind = _REGEX
        elif ch == "[":
            cls, i = _class(pattern, i)
            out.append(cls)
            kind = _REGEX
        else:
            out.append(re.escape(ch))
    return kind, "".join(out)


class _Pattern:
    """One cleaned .dockerignore line."""

    __slots__ = ("text", "exclusion", "kind", "regex", "dirs")

    def __init__(self, text: str, exclusion: bool) -> None:
        self.text = text
        self.exclusion = exclusion
        self.kind, regex = _translate(text)
        self.regex = re.compile(regex)
        self.dirs = text.split("/")

    def matches(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self.regex.fullmatch(path) is not None

    def matches_or_parent(self, path: str, parents: list[str]) -> bool:
        return self.matches(path) or any(self.matches(parent) for parent in parents)


def _component_matches(component: str, name: str) -> bool:
    try:
        _kind, regex = _translate(component)
    except _BadPattern:
        return True
    return re.fullmatch(regex, name) is not None


def _clean_relpath(relpath: str) -> str:
    path = _go_clean(relpath.replace(os.sep, "/")).lstrip("/")
    return "" if path == "." else path


class IgnoreRules:
    """The parsed .dockerignore of a build context."""

    __slots__ = ("_patterns",)

    def __init__(self, patterns: list[_Pattern]) -> None:
        self._patterns = patterns

    @classmethod
    def load(cls, context_dir: str, override: str | None = None) -> IgnoreRules:
        """Read context_dir/.dockerignore, or `override` instead where that
        file exists; without either, nothing is ignored."""
        path = os.path.join(context_dir, ".dockerignore")
        if override is not None and os.path.exists(override):
            path = override
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return cls([])
        except OSError as e:
            raise InvalidArgumentError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidArgumentError(f"{path}: not valid UTF-8 text (byte {e.start})") from None
        return cls.from_lines(text.split("\n"), source=path)

    @classmethod
    def from_lines(cls, lines: Iterable[str], source: str = ".dockerignore") -> IgnoreRules:
        """Parse .dockerignore lines; `source` only names the file in error messages."""
        if isinstance(lines, str):
            lines = lines.split("\n")
        patterns: list[_Pattern] = []
        for number, line in enumerate(lines, start=1):
            if number == 1:
                line = line.removeprefix("\ufeff")
            # Only a "#" in the first column starts a comment: " #x" is a pattern.
            if line.startswith("#"):
                continue
            text = line.strip()
            if not text:
                continue
            exclusion = text.startswith("!")
            if exclusion:
                text = text[1:].strip()
                if not text:
                    raise InvalidArgumentError(f'{source}:{number}: illegal exclusion pattern: "!"')
            # Patterns are relative to the context root whether or not they start with "/".
            text = _go_clean(text)
            if len(text) > 1 and text.startswith("/"):
                text = text[1:]
            try:
                patterns.append(_Pattern(text, exclusion))
            except _BadPattern:
                raise InvalidArgumentError(f"{source}:{number}: syntax error in pattern: {line.strip()}") from None
        return cls(patterns)

    @property
    def patterns(self) -> list[str]:
        """The cleaned patterns, in order, exceptions with their "!"."""
        return [("!" if p.exclusion else "") + p.text for p in self._patterns]

    def ignored(self, relpath: str) -> bool:
        """True if the last rule matching relpath (or one of its parent directories) ignores it."""
        path = _clean_relpath(relpath)
        if not path:
            return False  # the context root itself
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        matched = False
        for pattern in self._patterns:
            # A rule can only change the answer if it points the other way.
            if pattern.exclusion != matched:
                continue
            if pattern.matches_or_parent(path, parents):
                matched = not pattern.exclusion
        return matched

    def may_contain_exceptions(self, reldir: str) -> bool:
        """True if some "!" rule could re-include a path below reldir, so a walker must descend.

        Rules that match reldir itself or one of its parents cannot: every
        path below reldir sees the same matches, in the same order, as reldir.
        This errs on the side of True (any "**" is assumed to match).
        """
        path = _clean_relpath(reldir)
        parts = path.split("/") if path else []
        return any(p.exclusion and self._may_match_below(p, parts) for p in self._patterns)

    @staticmethod
    def _may_match_below(pattern: _Pattern, parts: list[str]) -> bool:
        for i, component in enumerate(pattern.dirs):
            if "**" in component or i == len(parts):
                return True
            if not _component_matches(component, parts[i]):
                return False
        return False
