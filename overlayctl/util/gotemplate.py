"""Go's text/template, the subset Docker's `--format` uses, in pure Python.

Parsing and execution follow Go's own rules and word their errors the way
Go does, because scripts written for the docker CLI match on them:

- lexing: ``{{``/``}}`` actions, ``{{- `` and `` -}}`` trim markers (the
  dash needs a space beside it, else ``{{-3}}`` is a number), comments
  ``{{/* */}}``, newlines allowed inside actions;
- actions: fields and chains (``.A.B``, ``$x.A``, ``(pipe).A``), pipelines
  with ``|``, variables (``$x := ...``, ``$x = ...``, ``range $i, $v :=``),
  ``if``/``else if``/``else``, ``range`` (with ``else``, ``break`` and
  ``continue``), ``with`` (with ``else``);
- Go's builtins (``and or not len index slice eq ne lt le gt ge print
  printf println html js urlquery``; not ``call``) and Docker's (``json join split lower upper title
  truncate pad``).

``define``, ``template`` and ``block`` are refused when parsing.

Data is what a JSON document decodes to (dict, list, str, int, float, bool,
None), or objects whose capitalised attributes are the fields (and, when
callable, the methods) of the Go type named by their GO_TYPE attribute. As
Docker's inspect does, a dict missing a key is an error (Go's
``missingkey=error``); ``Template.option("missingkey=default")`` gives Go's
default, ``<no value>``. An object's ``json_value()``, when it has one, is
what ``json`` encodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from overlayctl.errors import InvalidArgumentError
from overlayctl.util import jsonio

__all__ = ["Template", "GoMap", "DOCKER_FUNCS", "printable", "go_type"]


class _Missing:
    """Go's invalid reflect.Value: a map key that is not there."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()
_SPACE = " \t\r\n"


class _ParseError(Exception):
    pass


class _ExecError(Exception):
    """An error inside a function, worded by the function; the evaluator
    adds where it happened."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class GoMap(Mapping[str, Any]):
    """A JSON object that is a Go map in Docker's types (Labels, Options,
    NetworkSettings.Networks, ...), not a struct: a key that is not there
    is Go's zero value (``<no value>``; ``""`` through ``index`` when the
    values are strings), never an error."""

    GO_TYPE = "map[string]interface {}"

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def zero(self) -> Any:
        """The zero value of the map's element type."""
        values = list(self._items.values())
        return "" if all(isinstance(v, str) for v in values) else None


# ---------------------------------------------------------------- lexer

(
    T_ERROR,
    T_TEXT,
    T_LEFT,
    T_RIGHT,
    T_EOF,
    T_SPACE,
    T_FIELD,
    T_IDENT,
    T_DOT,
    T_VAR,
    T_STRING,
    T_RAW,
    T_CHARCONST,
    T_NUMBER,
    T_BOOL,
    T_NIL,
    T_PIPE,
    T_LPAREN,
    T_RPAREN,
    T_DECLARE,
    T_ASSIGN,
    T_CHAR,
    T_KEYWORD,
) = range(23)

_KEYWORDS = {"define", "else", "end", "if", "range", "template", "with", "block", "break", "continue"}


class _Token:
    __slots__ = ("typ", "val", "pos", "line")

    def __init__(self, typ: int, val: str, pos: int, line: int) -> None:
        self.typ, self.val, self.pos, self.line = typ, val, pos, line

    def __str__(self) -> str:
        # Go's item.String(): how a token is named in "unexpected ..." errors.
        if self.typ == T_EOF:
            return "EOF"
        if self.typ == T_ERROR:
            return self.val
        if self.typ in (T_KEYWORD, T_DOT, T_NIL):
            return f"<{self.val}>"
        if len(self.val) > 10:
            return _go_quote(self.val[:10]) + "..."
        return _go_quote(self.val)


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdigit()


class _Lexer:
    """Go's lexer, run to the end at once; an error is the last token."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.start = 0
        self.line = 1
        self.tokens: list[_Token] = []
        self.paren_depth = 0

    def run(self) -> list[_Token]:
        state: Callable[[], Any] | None = self.lex_text
        while state is not None:
            state = state()
        return self.tokens

    def emit(self, typ: int) -> None:
        val = self.text[self.start : self.pos]
        self.tokens.append(_Token(typ, val, self.start, self.line))
        self.line += val.count("\n")
        self.start = self.pos

    def ignore(self) -> None:
        self.line += self.text[self.start : self.pos].count("\n")
        self.start = self.pos

    def error(self, message: str) -> Callable[[], Any] | None:
        """Emit the error token; its None ends the scan."""
        self.tokens.append(_Token(T_ERROR, message, self.start, self.line))
        return None

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_right_delim(self) -> tuple[bool, bool]:
        rest = self.text[self.pos :]
        if len(rest) >= 2 and rest[0] in _SPACE and rest[1] == "-" and rest[2:].startswith("}}"):
            return True, True
        return rest.startswith("}}"), False

    def lex_text(self) -> Callable[[], Any] | None:
        x = self.text.find("{{", self.pos)
        if x < 0:
            self.pos = len(self.text)
            if self.pos > self.start:
                self.emit(T_TEXT)
            self.emit(T_EOF)
            return None
        self.pos = x
        if x > self.start:
            after = self.text[x + 2 : x + 4]
            trim = len(after) == 2 and after[0] == "-" and after[1] in _SPACE
            end = len(self.text[self.start : x].rstrip(_SPACE)) + self.start if trim else x
            self.pos = end
            if end > self.start:
                self.emit(T_TEXT)
            self.pos = x
            self.ignore()
        return self.lex_left_delim

    def lex_left_delim(self) -> Callable[[], Any] | None:
        self.pos += 2
        after = self.text[self.pos : self.pos + 2]
        marker = 2 if len(after) == 2 and after[0] == "-" and after[1] in _SPACE else 0
        if self.text.startswith("/*", self.pos + marker):
            self.pos += marker
            self.ignore()
            return self.lex_comment
        self.emit(T_LEFT)
        self.pos += marker
        self.ignore()
        self.paren_depth = 0
        return self.lex_inside

    def lex_comment(self) -> Callable[[], Any] | None:
        self.pos += 2
        x = self.text.find("*/", self.pos)
        if x < 0:
            return self.error("unclosed comment")
        self.pos = x + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.error("comment ends before closing delimiter")
        self.pos += (2 if trim else 0) + 2
        if trim:
            self.pos += len(self.text) - self.pos - len(self.text[self.pos :].lstrip(_SPACE))
        self.ignore()
        return self.lex_text

    def lex_right_delim(self, trim: bool) -> Callable[[], Any] | None:
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += 2
        self.emit(T_RIGHT)
        if trim:
            self.pos += len(self.text) - self.pos - len(self.text[self.pos :].lstrip(_SPACE))
            self.ignore()
        return self.lex_text

    def lex_inside(self) -> Callable[[], Any] | None:
        delim, trim = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim(trim)
            return self.error("unclosed left paren")
        if self.pos >= len(self.text):
            return self.error("unclosed action")
        r = self.text[self.pos]
        self.pos += 1
        if r in _SPACE:
            self.pos -= 1
            return self.lex_space
        if r == "=":
            self.emit(T_ASSIGN)
        elif r == ":":
            if self.peek() != "=":
                return self.error("expected :=")
            self.pos += 1
            self.emit(T_DECLARE)
        elif r == "|":
            self.emit(T_PIPE)
        elif r == '"':
            return self.lex_quote
        elif r == "`":
            return self.lex_raw_quote
        elif r == "$":
            return self.lex_variable
        elif r == "'":
            return self.lex_char
        elif r == "." and not ("0" <= self.peek() <= "9" and self.peek() != ""):
            return self.lex_field
        elif r in "+-.0123456789":
            self.pos -= 1
            return self.lex_number
        elif _is_alnum(r):
            self.pos -= 1
            return self.lex_identifier
        elif r == "(":
            self.emit(T_LPAREN)
            self.paren_depth += 1
        elif r == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.error("unexpected right paren")
            self.emit(T_RPAREN)
        elif r.isascii() and r.isprintable():
            self.emit(T_CHAR)
        else:
            return self.error(f"unrecognized character in action: {_unicode_name(r)}")
        return self.lex_inside

    def lex_space(self) -> Callable[[], Any] | None:
        spaces = 0
        while self.peek() != "" and self.peek() in _SPACE:
            self.pos += 1
            spaces += 1
        # A space may be the one of " -}}": then it belongs to the delimiter.
        if self.text[self.pos - 1 :].startswith(self.text[self.pos - 1] + "-}}"):
            self.pos -= 1
            if spaces == 1:
                return self.lex_inside
        self.emit(T_SPACE)
        return self.lex_inside

    def at_terminator(self) -> bool:
        r = self.peek()
        return r == "" or r in _SPACE or r in ".,|:)(}"

    def lex_identifier(self) -> Callable[[], Any] | None:
        while self.peek() != "" and _is_alnum(self.peek()):
            self.pos += 1
        if not self.at_terminator():
            return self.error(f"bad character {_unicode_name(self.peek())}")
        word = self.text[self.start : self.pos]
        if word in _KEYWORDS:
            self.emit(T_KEYWORD)
        elif word in ("true", "false"):
            self.emit(T_BOOL)
        elif word == "nil":
            self.emit(T_NIL)
        else:
            self.emit(T_IDENT)
        return self.lex_inside

    def lex_field(self) -> Callable[[], Any] | None:
        return self.lex_field_or_variable(T_FIELD)

    def lex_variable(self) -> Callable[[], Any] | None:
        if self.at_terminator():
            self.emit(T_VAR)
            return self.lex_inside
        return self.lex_field_or_variable(T_VAR)

    def lex_field_or_variable(self, typ: int) -> Callable[[], Any] | None:
        if self.at_terminator():
            self.emit(T_VAR if typ == T_VAR else T_DOT)
            return self.lex_inside
        while self.peek() != "" and _is_alnum(self.peek()):
            self.pos += 1
        if not self.at_terminator():
            return self.error(f"bad character {_unicode_name(self.peek())}")
        self.emit(typ)
        return self.lex_inside

    def lex_char(self) -> Callable[[], Any] | None:
        while True:
            r = self.peek()
            self.pos += 1
            if r == "\\":
                r2 = self.peek()
                self.pos += 1
                if r2 not in ("", "\n"):
                    continue
                return self.error("unterminated character constant")
            if r in ("", "\n"):
                return self.error("unterminated character constant")
            if r == "'":
                break
        self.emit(T_CHARCONST)
        return self.lex_inside

    def lex_quote(self) -> Callable[[], Any] | None:
        while True:
            r = self.peek()
            self.pos += 1
            if r == "\\":
                r2 = self.peek()
                self.pos += 1
                if r2 not in ("", "\n"):
                    continue
                return self.error("unterminated quoted string")
            if r in ("", "\n"):
                return self.error("unterminated quoted string")
            if r == '"':
                break
        self.emit(T_STRING)
        return self.lex_inside

    def lex_raw_quote(self) -> Callable[[], Any] | None:
        x = self.text.find("`", self.pos)
        if x < 0:
            return self.error("unterminated raw quoted string")
        self.pos = x + 1
        self.emit(T_RAW)
        return self.lex_inside

    def lex_number(self) -> Callable[[], Any] | None:
        if self.peek() and self.peek() in "+-":
            self.pos += 1
        digits = "0123456789_"
        if self.text.startswith(("0x", "0X"), self.pos):
            self.pos += 2
            digits = "0123456789abcdefABCDEF_"
        while self.peek() != "" and self.peek() in digits:
            self.pos += 1
        if self.peek() == ".":
            self.pos += 1
            while self.peek() != "" and self.peek() in digits:
                self.pos += 1
        if self.peek() and self.peek() in "eE" and digits == "0123456789_":
            self.pos += 1
            if self.peek() and self.peek() in "+-":
                self.pos += 1
            while self.peek() != "" and self.peek() in "0123456789_":
                self.pos += 1
        if self.peek() != "" and _is_alnum(self.peek()):
            self.pos += 1
            return self.error(f"bad number syntax: {_go_quote(self.text[self.start : self.pos])}")
        self.emit(T_NUMBER)
        return self.lex_inside


def _unicode_name(ch: str) -> str:
    """Go's %#U: U+007D '}'."""
    if not ch:
        return "U+FFFFFFFF"
    return f"U+{ord(ch):04X} '{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"


# ---------------------------------------------------------------- nodes


class _Node:
    pos = 0

    def __str__(self) -> str:  # pragma: no cover - every node names itself
        return ""


class _Text(_Node):
    def __init__(self, pos: int, text: str) -> None:
        self.pos, self.text = pos, text


class _Field(_Node):
    def __init__(self, pos: int, idents: list[str]) -> None:
        self.pos, self.idents = pos, idents

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


class _Variable(_Node):
    def __init__(self, pos: int, idents: list[str]) -> None:
        self.pos, self.idents = pos, idents

    def __str__(self) -> str:
        return ".".join(self.idents)


class _Chain(_Node):
    def __init__(self, pos: int, node: _Node, fields: list[str]) -> None:
        self.pos, self.node, self.fields = pos, node, fields

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


class _Literal(_Node):
    """dot, nil, a bool, a number or a string: a value with its spelling."""

    def __init__(self, pos: int, value: Any, text: str, kind: str) -> None:
        self.pos, self.value, self.text, self.kind = pos, value, text, kind

    def __str__(self) -> str:
        return self.text


class _Identifier(_Node):
    def __init__(self, pos: int, name: str) -> None:
        self.pos, self.name = pos, name

    def __str__(self) -> str:
        return self.name


class _Command(_Node):
    def __init__(self, pos: int) -> None:
        self.pos = pos
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Pipe(_Node):
    def __init__(self, pos: int, line: int) -> None:
        self.pos, self.line = pos, line
        self.decl: list[str] = []
        self.is_assign = False
        self.cmds: list[_Command] = []

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


class _Action(_Node):
    def __init__(self, pos: int, pipe: _Pipe) -> None:
        self.pos, self.pipe = pos, pipe


class _Control(_Node):
    def __init__(self, kind: str, pos: int, pipe: _Pipe, body: list[_Node], otherwise: list[_Node] | None) -> None:
        self.kind, self.pos, self.pipe, self.body, self.otherwise = kind, pos, pipe, body, otherwise


class _Jump(_Node):
    """break or continue."""

    def __init__(self, pos: int, kind: str) -> None:
        self.pos, self.kind = pos, kind


class _End(_Node):
    def __str__(self) -> str:
        return "{{end}}"


class _Else(_Node):
    def __init__(self, pos: int, line: int, else_if: bool = False, else_with: bool = False) -> None:
        self.pos, self.line, self.else_if, self.else_with = pos, line, else_if, else_with

    def __str__(self) -> str:
        return "{{else}}"


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, funcs: Mapping[str, Any]) -> None:
        self.tokens = _Lexer(text).run()
        self.i = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0
        self.current = self.tokens[0]

    def errorf(self, message: str) -> None:
        raise _ParseError(f"template: :{self.current.line}: {message}")

    def next(self) -> _Token:
        token = self.tokens[min(self.i, len(self.tokens) - 1)]
        self.i += 1
        self.current = token
        return token

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> _Token:
        return self.tokens[min(self.i, len(self.tokens) - 1)]

    def next_non_space(self) -> _Token:
        token = self.next()
        while token.typ == T_SPACE:
            token = self.next()
        return token

    def peek_non_space(self) -> _Token:
        token = self.next_non_space()
        self.backup()
        return token

    def expect(self, typ: int, context: str) -> _Token:
        token = self.next_non_space()
        if token.typ != typ:
            self.unexpected(token, context)
        return token

    def unexpected(self, token: _Token, context: str) -> None:
        if token.typ == T_ERROR:
            self.errorf(token.val)
        self.errorf(f"unexpected {token} in {context}")

    def parse(self) -> list[_Node]:
        root: list[_Node] = []
        while self.peek().typ != T_EOF:
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                self.errorf(f"unexpected {node}")
            root.append(node)
        return root

    def item_list(self) -> tuple[list[_Node], _Node]:
        items: list[_Node] = []
        while self.peek_non_space().typ != T_EOF:
            node = self.text_or_action()
            if isinstance(node, _End | _Else):
                return items, node
            items.append(node)
        self.next_non_space()
        self.errorf("unexpected EOF")
        raise AssertionError

    def text_or_action(self) -> _Node:
        token = self.next_non_space()
        if token.typ == T_TEXT:
            return _Text(token.pos, token.val)
        if token.typ == T_LEFT:
            return self.action()
        self.unexpected(token, "input")
        raise AssertionError

    def action(self) -> _Node:
        token = self.next_non_space()
        if token.typ == T_KEYWORD:
            word = token.val
            if word == "else":
                return self.else_control()
            if word == "end":
                self.expect(T_RIGHT, "end")
                return _End()
            if word in ("if", "range", "with"):
                return self.control(word)
            if word in ("break", "continue"):
                if self.range_depth == 0:
                    self.errorf(f"{{{{{word}}}}} outside {{{{range}}}}")
                self.expect(T_RIGHT, f"{{{{{word}}}}}")
                return _Jump(token.pos, word)
            self.errorf(f"{{{{{word}}}}} is not supported here: use a single template")
        self.backup()
        token = self.peek()
        return _Action(token.pos, self.pipeline("command", T_RIGHT))

    def else_control(self) -> _Node:
        peek = self.peek_non_space()
        if peek.typ == T_KEYWORD and peek.val in ("if", "with"):
            return _Else(peek.pos, peek.line, else_if=peek.val == "if", else_with=peek.val == "with")
        token = self.expect(T_RIGHT, "else")
        return _Else(token.pos, token.line)

    def control(self, kind: str) -> _Node:
        saved = len(self.vars)
        pipe = self.pipeline(kind, T_RIGHT)
        if kind == "range":
            self.range_depth += 1
        body, nxt = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        otherwise: list[_Node] | None = None
        if isinstance(nxt, _Else):
            if (nxt.else_if and kind == "if") or (nxt.else_with and kind == "with"):
                # {{else if x}} is {{else}}{{if x}}...{{end}}{{end}} sharing one {{end}}.
                self.next_non_space()
                otherwise = [self.control(kind)]
            else:
                if nxt.else_if or nxt.else_with:
                    self.errorf(f"unexpected <{'if' if nxt.else_if else 'with'}> in else")
                otherwise, nxt = self.item_list()
                if not isinstance(nxt, _End):
                    self.errorf(f"expected end; found {nxt}")
        del self.vars[saved:]
        return _Control(kind, pipe.pos, pipe, body, otherwise)

    def pipeline(self, context: str, end: int) -> _Pipe:
        token = self.peek_non_space()
        pipe = _Pipe(token.pos, token.line)
        while True:
            v = self.peek_non_space()
            if v.typ != T_VAR:
                break
            self.next_non_space()
            after = self.peek()
            nxt = self.peek_non_space()
            if nxt.typ in (T_ASSIGN, T_DECLARE):
                pipe.is_assign = nxt.typ == T_ASSIGN
                self.next_non_space()
                pipe.decl.append(v.val)
                if nxt.typ == T_DECLARE:
                    self.vars.append(v.val)
                elif v.val not in self.vars:
                    self.errorf(f"undefined variable {_go_quote(v.val)}")
                break
            if nxt.typ == T_CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(v.val)
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (T_VAR, T_RIGHT, T_RPAREN):
                        continue
                    self.errorf("range can only initialize variables")
                self.errorf(f"too many declarations in {context}")
            # Not a declaration: the variable is the pipeline's first operand.
            self.backup(2 if after.typ == T_SPACE else 1)
            break
        while True:
            token = self.next_non_space()
            if token.typ in (T_RIGHT, T_RPAREN):
                if token.typ != end:
                    self.unexpected(token, context)
                self.check_pipeline(pipe, context)
                if token.typ == T_RPAREN:
                    self.backup()
                return pipe
            if token.typ in (
                T_BOOL,
                T_CHARCONST,
                T_DOT,
                T_FIELD,
                T_IDENT,
                T_NUMBER,
                T_NIL,
                T_RAW,
                T_STRING,
                T_VAR,
                T_LPAREN,
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(token, context)

    def check_pipeline(self, pipe: _Pipe, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], _Literal):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == T_SPACE:
                continue
            if token.typ == T_ERROR:
                self.errorf(token.val)
            if token.typ in (T_RIGHT, T_RPAREN):
                self.backup()
            elif token.typ != T_PIPE:
                self.errorf(f"unexpected {token} in operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == T_FIELD:
            pos = self.peek().pos
            fields: list[str] = []
            while self.peek().typ == T_FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, _Field):
                return _Field(node.pos, node.idents + fields)
            if isinstance(node, _Variable):
                return _Variable(node.pos, node.idents + fields)
            if isinstance(node, _Literal):
                self.errorf(f"unexpected . after term {_go_quote(str(node))}")
            return _Chain(pos, node, fields)
        return node

    def term(self) -> _Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == T_ERROR:
            self.errorf(token.val)
        if typ == T_IDENT:
            if token.val not in self.funcs:
                self.errorf(f"function {_go_quote(token.val)} not defined")
            return _Identifier(token.pos, token.val)
        if typ == T_DOT:
            return _Literal(token.pos, None, ".", "dot")
        if typ == T_NIL:
            return _Literal(token.pos, None, "nil", "nil")
        if typ == T_VAR:
            name = token.val.split(".")[0]
            if name not in self.vars:
                self.errorf(f"undefined variable {_go_quote(name)}")
            return _Variable(token.pos, token.val.split("."))
        if typ == T_FIELD:
            return _Field(token.pos, [token.val[1:]])
        if typ == T_BOOL:
            return _Literal(token.pos, token.val == "true", token.val, "bool")
        if typ in (T_NUMBER, T_CHARCONST):
            return _Literal(token.pos, self.number(token), token.val, "number")
        if typ == T_LPAREN:
            pipe = self.pipeline("parenthesized pipeline", T_RPAREN)
            closing = self.next()
            if closing.typ != T_RPAREN:
                self.errorf(f"unclosed right paren: unexpected {closing}")
            return pipe
        if typ in (T_STRING, T_RAW):
            return _Literal(token.pos, self.unquote(token), token.val, "string")
        self.backup()
        return None

    def number(self, token: _Token) -> int | float:
        text = token.val
        if token.typ == T_CHARCONST:
            value = self.unquote(token)
            if len(value) != 1:
                self.errorf(f"malformed character constant: {text}")
            return ord(value)
        clean = text.replace("_", "")
        try:
            if clean.lower().startswith(("0x", "-0x", "+0x")):
                return int(clean, 16)
            if any(c in clean for c in ".eE"):
                # Go keeps a literal spelt as a float a float64, 1e3 included.
                return float(clean)
            if len(clean.lstrip("+-")) > 1 and clean.lstrip("+-").startswith("0"):
                return int(clean.lstrip("+-").lstrip("0") or "0", 8) * (-1 if clean.startswith("-") else 1)
            return int(clean)
        except ValueError:
            self.errorf(f"illegal number syntax: {_go_quote(text)}")
        raise AssertionError

    def unquote(self, token: _Token) -> str:
        text = token.val
        if text.startswith("`"):
            return text[1:-1].replace("\r", "")
        body = text[1:-1]
        out: list[str] = []
        i = 0
        simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}
        while i < len(body):
            ch = body[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            esc = body[i + 1] if i + 1 < len(body) else ""
            if esc in simple:
                out.append(simple[esc])
                i += 2
            elif esc == text[0]:
                out.append(esc)
                i += 2
            elif esc in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[esc]
                digits = body[i + 2 : i + 2 + width]
                if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                    self.errorf("invalid syntax")
                out.append(chr(int(digits, 16)))
                i += 2 + width
            elif esc in "01234567":
                digits = body[i + 1 : i + 4]
                if len(digits) != 3 or any(c not in "01234567" for c in digits):
                    self.errorf("invalid syntax")
                out.append(chr(int(digits, 8)))
                i += 4
            else:
                self.errorf("invalid syntax")
        return "".join(out)


# ---------------------------------------------------------------- values


def go_type(value: Any) -> str:
    """The Go type Docker's data would have for ``value``, as errors name it."""
    name = getattr(value, "GO_TYPE", None)
    if isinstance(name, str):
        return name
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "[]string" if value and all(isinstance(v, str) for v in value) else "[]interface {}"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    return type(value).__name__


def _format_float(value: float) -> str:
    """Go's %v of a float64: the shortest repr, %e past 1e21 or under 1e-4."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    if "e" in text or "E" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").rjust(2, "0")
        return f"{mantissa.removesuffix('.0')}e{sign}{digits}"
    if abs(value) >= 1e21:
        return _format_float_exp(value)
    return text.removesuffix(".0")


def _format_float_exp(value: float) -> str:
    text = f"{value:e}"
    mantissa, exp = text.split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mantissa}e{sign}{exp.lstrip('+-').rjust(2, '0')}"


def printable(value: Any, top: bool = True) -> str:
    """``value`` as Go's fmt.Print shows it: maps as map[k:v] with sorted
    keys, slices as [a b], nil as <nil> (and as <no value> when it is what
    an action printed)."""
    if value is MISSING or (value is None and top):
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + " ".join(printable(v, False) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{printable(k, False)}:{printable(value[k], False)}" for k in sorted(value)) + "]"
    text = getattr(value, "go_string", None)
    if callable(text):
        return str(text())
    return str(value)


def _truth(value: Any) -> bool:
    """Go's template truth: the zero value and empty collections are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool | int | float | str | list | tuple | Mapping):
        return bool(value)
    return True


def _json_plain(value: Any) -> Any:
    convert = getattr(value, "json_value", None)
    if callable(convert):
        return _json_plain(convert())
    if isinstance(value, GoMap):
        # encoding/json writes a Go map's keys sorted (a struct's in order).
        return {str(k): _json_plain(value[k]) for k in sorted(value)}
    if isinstance(value, Mapping):
        return {str(k): _json_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_plain(v) for v in value]
    if value is MISSING:
        return None
    return value


def _go_quote(text: str) -> str:
    """Go's strconv.Quote (%q) for the characters templates meet."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable():
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------- functions


def _want(value: Any, typ: str) -> Any:
    """``value`` converted to the Go parameter type ``typ``, or Go's error."""
    if typ == "any":
        return None if value is MISSING else value
    ok = {
        "string": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "[]string": isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
    }[typ]
    if not ok:
        if value is None or value is MISSING:
            raise _ExecError(f"invalid value; expected {typ}")
        raise _ExecError(f"wrong type for value; expected {typ}; got {go_type(value)}")
    return list(value) if typ == "[]string" else value


class _Func:
    """A template function: a Python callable and its Go parameter types
    (a trailing "..." type takes any number of arguments)."""

    def __init__(self, call: Callable[..., Any], params: list[str]) -> None:
        self.call, self.params = call, params

    @classmethod
    def of(cls, value: Any) -> _Func:
        if isinstance(value, _Func):
            return value
        import inspect

        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):
            return cls(value, ["...any"])
        params = []
        for p in signature.parameters.values():
            if p.kind == p.VAR_POSITIONAL:
                params.append("...any")
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                params.append("any")
        return cls(value, params)


def _is_separator(ch: str) -> bool:
    # strings.Title's word boundaries: ASCII other than letters, digits and
    # "_", and white space.
    if ch.isascii():
        return not (ch.isalnum() or ch == "_")
    return not (ch.isalpha() or ch.isdigit()) and ch.isspace()


def _title(text: str) -> str:
    out = []
    previous = " "
    for ch in text:
        out.append(ch.upper() if _is_separator(previous) else ch)
        previous = ch
    return "".join(out)


def _truncate(text: str, length: int) -> str:
    return text if len(text) < length else text[: max(length, 0)]


def _pad(text: str, prefix: int, suffix: int) -> str:
    return text if text == "" else " " * prefix + text + " " * suffix


def _split(text: str, sep: str) -> list[str]:
    return list(text) if sep == "" else text.split(sep)


def _json(value: Any) -> str:
    return jsonio.dumps(_json_plain(value))


DOCKER_FUNCS: dict[str, _Func] = {
    "json": _Func(_json, ["any"]),
    "split": _Func(_split, ["string", "string"]),
    "join": _Func(lambda items, sep: sep.join(items), ["[]string", "string"]),
    "title": _Func(_title, ["string"]),
    "lower": _Func(str.lower, ["string"]),
    "upper": _Func(str.upper, ["string"]),
    "pad": _Func(_pad, ["string", "int", "int"]),
    "truncate": _Func(_truncate, ["string", "int"]),
}


def _compare_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None or value is MISSING:
        return "nil"
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise _ExecError("missing argument for comparison")
    for other in others:
        a, b = _compare_kind(first), _compare_kind(other)
        if a != b:
            if "nil" in (a, b):
                if first is other or (a == b):
                    return True
                continue
            raise _ExecError("incompatible types for comparison")
        if a == "other":
            if first is other:
                return True
            if isinstance(first, list | tuple | Mapping) or isinstance(other, list | tuple | Mapping):
                raise _ExecError("non-comparable type " + printable(first) + ": " + go_type(first))
        if first == other:
            return True
    return False


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    ka, kb = _compare_kind(a), _compare_kind(b)
    if ka not in ("number", "string") or kb not in ("number", "string"):
        raise _ExecError("invalid type for comparison")
    if ka != kb:
        raise _ExecError("incompatible types for comparison")
    return a, b


def _lt(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a <= b)


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, list | tuple | Mapping):
        return len(value)
    raise _ExecError(f"len of type {go_type(value)}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise _ExecError("index of untyped nil")
    for index in indexes:
        if isinstance(item, Mapping):
            if not isinstance(index, str):
                raise _ExecError(f"value has type {go_type(index)}; should be string")
            item = item[index] if index in item else item.zero() if isinstance(item, GoMap) else None
        elif isinstance(item, list | tuple | str):
            if not isinstance(index, int) or isinstance(index, bool):
                raise _ExecError(f"cannot index slice/array with type {go_type(index)}")
            if not 0 <= index < len(item):
                raise _ExecError(f"index out of range: {index}")
            item = item[index] if not isinstance(item, str) else item.encode()[index]
        elif item is None:
            raise _ExecError("index of untyped nil")
        else:
            raise _ExecError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, list | tuple | str):
        raise _ExecError(f"can't slice item of type {go_type(item)}")
    if len(indexes) > 2:
        raise _ExecError(f"too many slice indexes: {len(indexes)}")
    bounds = [int(i) for i in indexes]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= end <= len(item):
        raise _ExecError(f"index out of range: {end if end > len(item) else start}")
    return item[start:end]


def _sprint(*values: Any) -> str:
    # fmt.Sprint: a space between operands when neither side is a string.
    out = []
    for i, value in enumerate(values):
        if i and not isinstance(value, str) and not isinstance(values[i - 1], str):
            out.append(" ")
        out.append(printable(value, False))
    return "".join(out)


def _sprintln(*values: Any) -> str:
    return " ".join(printable(v, False) for v in values) + "\n"


def _sprintf(fmt: str, *values: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %q %d %f %e %g %x %X %o %b %t %c %%."""
    out: list[str] = []
    i, arg = 0, 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0":
            j += 1
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        if j < len(fmt) and fmt[j] == ".":
            j += 1
            while j < len(fmt) and fmt[j].isdigit():
                j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        spec, verb = fmt[i + 1 : j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if arg >= len(values):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = values[arg]
        arg += 1
        out.append(_format_one(spec, verb, value))
    if arg < len(values):
        extra = ", ".join(f"{go_type(v)}={printable(v, False)}" for v in values[arg:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(spec: str, verb: str, value: Any) -> str:
    flags = "".join(c for c in spec if c in "+-# 0" and not spec.startswith(c + "."))
    rest = spec.lstrip("+-# 0")
    bad = f"%!{verb}({go_type(value)}={printable(value, False)})"
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if verb == "v":
        return _pad_spec(printable(value, False), flags, rest)
    if verb == "s":
        if isinstance(value, str) or not isinstance(value, int | float | bool):
            return _pad_spec(printable(value, False), flags, rest)
        return bad
    if verb == "q":
        if isinstance(value, str):
            return _pad_spec(_go_quote(value), flags, rest)
        return bad
    if verb == "t":
        return _pad_spec(printable(value, False), flags, rest) if isinstance(value, bool) else bad
    if verb in "dxXobc":
        if not is_int:
            if verb in "xX" and isinstance(value, str):
                return _pad_spec(value.encode().hex() if verb == "x" else value.encode().hex().upper(), flags, rest)
            return bad
        if verb == "c":
            return _pad_spec(chr(value), flags, rest)
        if verb == "b":
            return _pad_spec(format(value, "b"), flags, rest)
        return ("%" + flags + rest + verb) % value
    if verb in "feEgG":
        if not isinstance(value, int | float) or isinstance(value, bool):
            return bad
        if verb in "gG" and "." not in rest:
            return _pad_spec(_format_float(float(value)), flags, rest)
        return ("%" + flags + (rest if "." in rest else rest + ".6") + verb) % value
    return f"%!{verb}({go_type(value)}={printable(value, False)})"


def _pad_spec(text: str, flags: str, rest: str) -> str:
    width_text, _, precision = rest.partition(".")
    if precision:
        text = text[: int(precision)]
    width = int(width_text) if width_text else 0
    return text.ljust(width) if "-" in flags else text.rjust(width)


def _html(*values: Any) -> str:
    text = _sprint(*values)
    for raw, escaped in (
        ("&", "&amp;"),
        ("'", "&#39;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&#34;"),
        ("\0", "\ufffd"),
    ):
        text = text.replace(raw, escaped)
    return text


def _urlquery(*values: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_sprint(*values), safe="-_.~")


def _js(*values: Any) -> str:
    out = []
    for ch in _sprint(*values):
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=":
            out.append(f"\\u{ord(ch):04X}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


_BUILTINS: dict[str, _Func] = {
    "html": _Func(_html, ["...any"]),
    "urlquery": _Func(_urlquery, ["...any"]),
    "js": _Func(_js, ["...any"]),
    "index": _Func(_index, ["any", "...any"]),
    "slice": _Func(_slice, ["any", "...any"]),
    "len": _Func(_len, ["any"]),
    "not": _Func(lambda v: not _truth(v), ["any"]),
    "eq": _Func(_eq, ["any", "...any"]),
    "ne": _Func(lambda a, b: not _eq(a, b), ["any", "any"]),
    "lt": _Func(_lt, ["any", "any"]),
    "le": _Func(_le, ["any", "any"]),
    "gt": _Func(lambda a, b: not _le(a, b), ["any", "any"]),
    "ge": _Func(lambda a, b: not _lt(a, b), ["any", "any"]),
    "print": _Func(_sprint, ["...any"]),
    "printf": _Func(_sprintf, ["string", "...any"]),
    "println": _Func(_sprintln, ["...any"]),
    # and/or evaluate their arguments lazily (Go 1.18); the evaluator handles them.
    "and": _Func(lambda *a: a, ["any", "...any"]),
    "or": _Func(lambda *a: a, ["any", "...any"]),
}


# ---------------------------------------------------------------- execution


class _State:
    def __init__(self, template: Template, root: Any, out: list[str]) -> None:
        self.template = template
        self.root = root
        self.out = out
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.node: _Node | None = None

    def at(self, node: _Node) -> None:
        self.node = node

    def errorf(self, message: str) -> None:
        if self.node is None:
            raise InvalidArgumentError(f"template: : {message}")
        text = self.template.text
        pos = self.node.pos
        before = text[:pos].encode("utf-8", "surrogateescape")
        newline = before.rfind(b"\n")
        column = len(before) if newline < 0 else len(before) - newline - 1
        line = 1 + before.count(b"\n")
        raise InvalidArgumentError(f'template: :{line}:{column}: executing "" at <{self.node}>: {message}')

    def walk(self, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            self.walk_one(dot, node)

    def walk_one(self, dot: Any, node: _Node) -> None:
        self.at(node)
        if isinstance(node, _Text):
            self.out.append(node.text)
        elif isinstance(node, _Action):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.out.append(self.print_value(node, value))
        elif isinstance(node, _Control):
            mark = len(self.vars)
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                value = self.eval_pipeline(dot, node.pipe)
                if _truth(value):
                    self.walk(value if node.kind == "with" else dot, node.body)
                elif node.otherwise is not None:
                    self.walk(dot, node.otherwise)
            del self.vars[mark:]
        elif isinstance(node, _Jump):
            raise _Break() if node.kind == "break" else _Continue()

    def print_value(self, node: _Node, value: Any) -> str:
        self.at(node)
        return printable(value)

    def walk_range(self, dot: Any, node: _Control) -> None:
        self.at(node)
        value = self.eval_pipeline(dot, node.pipe)
        mark = len(self.vars)
        if isinstance(value, Mapping):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None or value is MISSING:
            items = []
        else:
            self.errorf(f"range can't iterate over {printable(value)}")
            raise AssertionError
        for key, element in items:
            if len(node.pipe.decl) == 1:
                self.set_top_var(1, element)
            elif len(node.pipe.decl) == 2:
                self.set_top_var(2, key)
                self.set_top_var(1, element)
            try:
                self.walk(element, node.body)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.vars[mark:]
        if not items and node.otherwise is not None:
            self.walk(dot, node.otherwise)

    def set_top_var(self, n: int, value: Any) -> None:
        # The range variables were pushed by eval_pipeline; n counts from the top.
        name = self.vars[len(self.vars) - n][0]
        self.vars[len(self.vars) - n] = (name, value)

    def eval_pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        self.at(pipe)
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(name, value)
            else:
                self.vars.append((name, value))
        return value

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        self.errorf(f"undefined variable: {name}")

    def var_value(self, name: str) -> Any:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return self.vars[i][1]
        self.errorf(f"undefined variable: {name}")
        raise AssertionError

    def eval_command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, _Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, _Identifier):
            return self.eval_function(dot, first, cmd.args, final)
        if isinstance(first, _Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Variable):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        assert isinstance(first, _Literal)
        if first.kind == "nil":
            self.errorf("nil is not a command")
        return dot if first.kind == "dot" else first.value

    def not_a_function(self, args: list[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _NO_FINAL:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_arg(self, dot: Any, node: _Node) -> Any:
        self.at(node)
        if isinstance(node, _Field):
            return self.eval_field_chain(dot, dot, node, node.idents, [node], _NO_FINAL)
        if isinstance(node, _Variable):
            return self.eval_variable(dot, node, [node], _NO_FINAL)
        if isinstance(node, _Pipe):
            return self.eval_pipeline(dot, node)
        if isinstance(node, _Identifier):
            return self.eval_function(dot, node, [node], _NO_FINAL)
        if isinstance(node, _Chain):
            return self.eval_chain(dot, node, [node], _NO_FINAL)
        assert isinstance(node, _Literal)
        if node.kind == "dot":
            return dot
        return node.value

    def eval_chain(self, dot: Any, chain: _Chain, args: list[_Node], final: Any) -> Any:
        self.at(chain)
        if not chain.fields:
            self.errorf("internal error: no fields in evalChainNode")
        if isinstance(chain.node, _Literal) and chain.node.kind == "nil":
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable(self, dot: Any, variable: _Variable, args: list[_Node], final: Any) -> Any:
        self.at(variable)
        value = self.var_value(variable.idents[0])
        if len(variable.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.idents[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: _Node, idents: list[str], args: list[_Node], final: Any
    ) -> Any:
        self.at(node)
        # Go names a value taken out of a JSON map or slice by its static
        # type, interface {}, once past the root.
        static = receiver is not self.root and isinstance(self.root, Mapping | list)
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, [node], _NO_FINAL, receiver, static)
            static = isinstance(self.root, Mapping | list)
        return self.eval_field(dot, idents[-1], node, args, final, receiver, static)

    def eval_field(
        self, dot: Any, name: str, node: _Node, args: list[_Node], final: Any, receiver: Any, static: bool
    ) -> Any:
        if receiver is MISSING:
            # Only a Go map (a Mapping that is not a dict) gives no value,
            # and Go carries on with none.
            return MISSING
        typ = "interface {}" if static else go_type(receiver)
        if receiver is None:
            self.errorf(f"nil pointer evaluating {typ}.{name}")
        has_args = len(args) > 1 or final is not _NO_FINAL
        if isinstance(receiver, Mapping):
            if has_args:
                self.errorf(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            if self.template.missing_key_error and isinstance(receiver, dict):
                self.errorf(f"map has no entry for key {_go_quote(name)}")
            return MISSING
        if not isinstance(receiver, str | int | float | bool | list | tuple) and name[:1].isupper():
            try:
                member = getattr(receiver, name)
            except AttributeError:
                member = MISSING
            if member is not MISSING:
                if callable(member):
                    return self.call(dot, _Func.of(member), name, node, args, final)
                if has_args:
                    self.errorf(f"{name} has arguments but cannot be invoked as function")
                return member
        self.errorf(f"can't evaluate field {name} in type {typ}")

    def eval_function(self, dot: Any, ident: _Identifier, args: list[_Node], final: Any) -> Any:
        self.at(ident)
        name = ident.name
        function = self.template.funcs[name]
        if name in ("and", "or") and function is _BUILTINS[name]:
            return self.eval_and_or(dot, ident, args, final)
        return self.call(dot, function, name, ident, args, final)

    def eval_and_or(self, dot: Any, ident: _Identifier, args: list[_Node], final: Any) -> Any:
        nodes = args[1:]
        count = len(nodes) + (final is not _NO_FINAL)
        if count < 1:
            self.errorf(f"wrong number of args for {ident.name}: want at least 1 got 0")
        value: Any = None
        for node in nodes:
            value = self.eval_arg(dot, node)
            if _truth(value) == (ident.name == "or"):
                return value
        if final is not _NO_FINAL:
            value = final
        return value

    def call(self, dot: Any, function: _Func, name: str, node: _Node, args: list[_Node], final: Any) -> Any:
        argv = args[1:]
        params = function.params
        variadic = bool(params) and params[-1].startswith("...")
        fixed = len(params) - variadic
        given = len(argv) + (final is not _NO_FINAL)
        if (variadic and given < fixed) or (not variadic and given != fixed):
            self.at(node)
            want = f"at least {fixed}" if variadic else str(fixed)
            self.errorf(f"wrong number of args for {name}: want {want} got {given}")
        values = []
        for i, arg in enumerate(argv):
            typ = params[i] if i < fixed else params[-1][3:]
            value = self.eval_arg(dot, arg)
            values.append(self.checked(value, typ, arg))
        if final is not _NO_FINAL:
            typ = params[given - 1] if given - 1 < fixed else params[-1][3:]
            values.append(self.checked(final, typ, node))
        try:
            return function.call(*values)
        except _ExecError as exc:
            self.at(node)
            self.errorf(f"error calling {name}: {exc}")
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            self.at(node)
            self.errorf(f"error calling {name}: {exc}")

    def checked(self, value: Any, typ: str, node: _Node) -> Any:
        try:
            return _want(value, typ)
        except _ExecError as exc:
            self.at(node)
            self.errorf(str(exc))


_NO_FINAL = object()


class Template:
    """A parsed template; ``execute`` renders it over one value."""

    def __init__(self, text: str, funcs: dict[str, Any] | None = None) -> None:
        """Parse ``text``; raise InvalidArgumentError worded as Docker's
        "template parsing error: template: :LINE: ..." on a bad template."""
        self.text = text
        self.funcs: dict[str, _Func] = dict(_BUILTINS)
        self.funcs.update(DOCKER_FUNCS)
        for name, function in (funcs or {}).items():
            self.funcs[name] = _Func.of(function)
        self.missing_key_error = True
        try:
            self.nodes = _Parser(text, self.funcs).parse()
        except _ParseError as exc:
            raise InvalidArgumentError(f"template parsing error: {exc}") from None

    def option(self, setting: str) -> Template:
        """Go's Template.Option for missingkey: "missingkey=error" (the
        default here, as Docker's inspect) or "missingkey=default"
        (a missing key prints <no value>)."""
        if setting not in ("missingkey=error", "missingkey=default", "missingkey=invalid"):
            raise InvalidArgumentError(f"unrecognized option: {setting}")
        self.missing_key_error = setting == "missingkey=error"
        return self

    def execute(self, data: object) -> str:
        """Render over ``data``; raise InvalidArgumentError with Go's
        wording ("template: :1:2: executing "" at <.Foo>: ...") when a
        field or a function fails."""
        return "".join(self.render(data, []))

    def render(self, data: object, out: list[str]) -> list[str]:
        """Render into ``out`` and return it; on an error, ``out`` keeps
        what was written before it, as Go's Execute leaves its writer."""
        state = _State(self, data, out)
        try:
            state.walk(data, self.nodes)
        except (_Break, _Continue):  # pragma: no cover - the parser allows them inside range only
            pass
        return out
