"""The parsing half of overlayctl.util.gotemplate: Go's text/template
lexer and parser, with Go's wording for every error ("template: :1:
unexpected ... in operand"). The lexer runs to the end at once and ends
its tokens with an error token where Go's would stop; the parser reports
the error when it reaches it, as Go's does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

SPACE = " \t\r\n"


class ParseError(Exception):
    pass


def go_quote(text: str) -> str:
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
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def is_alnum(ch: str) -> bool:
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
        if len(rest) >= 2 and rest[0] in SPACE and rest[1] == "-" and rest[2:].startswith("}}"):
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
            trim = len(after) == 2 and after[0] == "-" and after[1] in SPACE
            end = len(self.text[self.start : x].rstrip(SPACE)) + self.start if trim else x
            self.pos = end
            if end > self.start:
                self.emit(T_TEXT)
            self.pos = x
            self.ignore()
        return self.lex_left_delim

    def lex_left_delim(self) -> Callable[[], Any] | None:
        self.pos += 2
        after = self.text[self.pos : self.pos + 2]
        marker = 2 if len(after) == 2 and after[0] == "-" and after[1] in SPACE else 0
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
            self.pos += len(self.text) - self.pos - len(self.text[self.pos :].lstrip(SPACE))
        self.ignore()
        return self.lex_text

    def lex_right_delim(self, trim: bool) -> Callable[[], Any] | None:
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += 2
        self.emit(T_RIGHT)
        if trim:
            self.pos += len(self.text) - self.pos - len(self.text[self.pos :].lstrip(SPACE))
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
        if r in SPACE:
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
        elif is_alnum(r):
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
        while self.peek() != "" and self.peek() in SPACE:
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
        return r == "" or r in SPACE or r in ".,|:)(}"

    def lex_identifier(self) -> Callable[[], Any] | None:
        while self.peek() != "" and is_alnum(self.peek()):
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
        while self.peek() != "" and is_alnum(self.peek()):
            self.pos += 1
        if not self.at_terminator():
            return self.error(f"bad character {_unicode_name(self.peek())}")
        self.emit(typ)
        return self.lex_inside

    def lex_char(self) -> Callable[[], Any] | None:
        return self._lex_delimited("'", T_CHARCONST, "unterminated character constant")

    def lex_quote(self) -> Callable[[], Any] | None:
        return self._lex_delimited('"', T_STRING, "unterminated quoted string")

    def _lex_delimited(self, end: str, token: Any, unterminated: str) -> Callable[[], Any] | None:
        """A character constant or an interpreted string: up to `end`, a
        backslash escaping the next character, never across a newline."""
        while True:
            r = self.peek()
            self.pos += 1
            if r == "\\":
                r2 = self.peek()
                self.pos += 1
                if r2 not in ("", "\n"):
                    continue
                return self.error(unterminated)
            if r in ("", "\n"):
                return self.error(unterminated)
            if r == end:
                break
        self.emit(token)
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
        if self.peek() != "" and is_alnum(self.peek()):
            self.pos += 1
            return self.error(f"bad number syntax: {go_quote(self.text[self.start : self.pos])}")
        self.emit(T_NUMBER)
        return self.lex_inside


def _unicode_name(ch: str) -> str:
    """Go's %#U: U+007D '}'."""
    if not ch:
        return "U+FFFFFFFF"
    return f"U+{ord(ch):04X} '{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"


# ---------------------------------------------------------------- nodes


class Node:
    pos = 0

    def __str__(self) -> str:  # pragma: no cover - every node names itself
        return ""


class Text(Node):
    def __init__(self, pos: int, text: str) -> None:
        self.pos, self.text = pos, text


class Field(Node):
    def __init__(self, pos: int, idents: list[str]) -> None:
        self.pos, self.idents = pos, idents

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


class Variable(Node):
    def __init__(self, pos: int, idents: list[str]) -> None:
        self.pos, self.idents = pos, idents

    def __str__(self) -> str:
        return ".".join(self.idents)


class Chain(Node):
    def __init__(self, pos: int, node: Node, fields: list[str]) -> None:
        self.pos, self.node, self.fields = pos, node, fields

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, Pipe) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


class Literal(Node):
    """dot, nil, a bool, a number or a string: a value with its spelling."""

    def __init__(self, pos: int, value: Any, text: str, kind: str) -> None:
        self.pos, self.value, self.text, self.kind = pos, value, text, kind

    def __str__(self) -> str:
        return self.text


class Identifier(Node):
    def __init__(self, pos: int, name: str) -> None:
        self.pos, self.name = pos, name

    def __str__(self) -> str:
        return self.name


class Command(Node):
    def __init__(self, pos: int) -> None:
        self.pos = pos
        self.args: list[Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, Pipe) else str(a) for a in self.args)


class Pipe(Node):
    def __init__(self, pos: int, line: int) -> None:
        self.pos, self.line = pos, line
        self.decl: list[str] = []
        self.is_assign = False
        self.cmds: list[Command] = []

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


class Action(Node):
    def __init__(self, pos: int, pipe: Pipe) -> None:
        self.pos, self.pipe = pos, pipe


class Control(Node):
    def __init__(self, kind: str, pos: int, pipe: Pipe, body: list[Node], otherwise: list[Node] | None) -> None:
        self.kind, self.pos, self.pipe, self.body, self.otherwise = kind, pos, pipe, body, otherwise


class Jump(Node):
    """break or continue."""

    def __init__(self, pos: int, kind: str) -> None:
        self.pos, self.kind = pos, kind


class End(Node):
    def __str__(self) -> str:
        return "{{end}}"


class Else(Node):
    def __init__(self, pos: int, line: int, else_if: bool = False, else_with: bool = False) -> None:
        self.pos, self.line, self.else_if, self.else_with = pos, line, else_if, else_with

    def __str__(self) -> str:
        return "{{else}}"


# ---------------------------------------------------------------- parser


class Parser:
    def __init__(self, text: str, funcs: Mapping[str, Any]) -> None:
        self.tokens = _Lexer(text).run()
        self.i = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0
        self.current = self.tokens[0]

    def errorf(self, message: str) -> None:
        raise ParseError(f"template: :{self.current.line}: {message}")

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

    def parse(self) -> list[Node]:
        root: list[Node] = []
        while self.peek().typ != T_EOF:
            node = self.text_or_action()
            if isinstance(node, End | Else):
                self.errorf(f"unexpected {node}")
            root.append(node)
        return root

    def item_list(self) -> tuple[list[Node], Node]:
        items: list[Node] = []
        while self.peek_non_space().typ != T_EOF:
            node = self.text_or_action()
            if isinstance(node, End | Else):
                return items, node
            items.append(node)
        self.next_non_space()
        self.errorf("unexpected EOF")
        raise AssertionError

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.typ == T_TEXT:
            return Text(token.pos, token.val)
        if token.typ == T_LEFT:
            return self.action()
        self.unexpected(token, "input")
        raise AssertionError

    def action(self) -> Node:
        token = self.next_non_space()
        if token.typ == T_KEYWORD:
            word = token.val
            if word == "else":
                return self.else_control()
            if word == "end":
                self.expect(T_RIGHT, "end")
                return End()
            if word in ("if", "range", "with"):
                return self.control(word)
            if word in ("break", "continue"):
                if self.range_depth == 0:
                    self.errorf(f"{{{{{word}}}}} outside {{{{range}}}}")
                self.expect(T_RIGHT, f"{{{{{word}}}}}")
                return Jump(token.pos, word)
            self.errorf(f"{{{{{word}}}}} is not supported here: use a single template")
        self.backup()
        token = self.peek()
        return Action(token.pos, self.pipeline("command", T_RIGHT))

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ == T_KEYWORD and peek.val in ("if", "with"):
            return Else(peek.pos, peek.line, else_if=peek.val == "if", else_with=peek.val == "with")
        token = self.expect(T_RIGHT, "else")
        return Else(token.pos, token.line)

    def control(self, kind: str) -> Node:
        saved = len(self.vars)
        pipe = self.pipeline(kind, T_RIGHT)
        if kind == "range":
            self.range_depth += 1
        body, nxt = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        otherwise: list[Node] | None = None
        if isinstance(nxt, Else):
            if (nxt.else_if and kind == "if") or (nxt.else_with and kind == "with"):
                # {{else if x}} is {{else}}{{if x}}...{{end}}{{end}} sharing one {{end}}.
                self.next_non_space()
                otherwise = [self.control(kind)]
            else:
                if nxt.else_if or nxt.else_with:
                    self.errorf(f"unexpected <{'if' if nxt.else_if else 'with'}> in else")
                otherwise, nxt = self.item_list()
                if not isinstance(nxt, End):
                    self.errorf(f"expected end; found {nxt}")
        del self.vars[saved:]
        return Control(kind, pipe.pos, pipe, body, otherwise)

    def pipeline(self, context: str, end: int) -> Pipe:
        token = self.peek_non_space()
        pipe = Pipe(token.pos, token.line)
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
                    self.errorf(f"undefined variable {go_quote(v.val)}")
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

    def check_pipeline(self, pipe: Pipe, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], Literal):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> Command:
        cmd = Command(self.peek_non_space().pos)
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

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == T_FIELD:
            pos = self.peek().pos
            fields: list[str] = []
            while self.peek().typ == T_FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, Field):
                return Field(node.pos, node.idents + fields)
            if isinstance(node, Variable):
                return Variable(node.pos, node.idents + fields)
            if isinstance(node, Literal):
                self.errorf(f"unexpected . after term {go_quote(str(node))}")
            return Chain(pos, node, fields)
        return node

    def term(self) -> Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == T_ERROR:
            self.errorf(token.val)
        if typ == T_IDENT:
            if token.val not in self.funcs:
                self.errorf(f"function {go_quote(token.val)} not defined")
            return Identifier(token.pos, token.val)
        if typ == T_DOT:
            return Literal(token.pos, None, ".", "dot")
        if typ == T_NIL:
            return Literal(token.pos, None, "nil", "nil")
        if typ == T_VAR:
            name = token.val.split(".")[0]
            if name not in self.vars:
                self.errorf(f"undefined variable {go_quote(name)}")
            return Variable(token.pos, token.val.split("."))
        if typ == T_FIELD:
            return Field(token.pos, [token.val[1:]])
        if typ == T_BOOL:
            return Literal(token.pos, token.val == "true", token.val, "bool")
        if typ in (T_NUMBER, T_CHARCONST):
            return Literal(token.pos, self.number(token), token.val, "number")
        if typ == T_LPAREN:
            pipe = self.pipeline("parenthesized pipeline", T_RPAREN)
            closing = self.next()
            if closing.typ != T_RPAREN:
                self.errorf(f"unclosed right paren: unexpected {closing}")
            return pipe
        if typ in (T_STRING, T_RAW):
            return Literal(token.pos, self.unquote(token), token.val, "string")
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
            self.errorf(f"illegal number syntax: {go_quote(text)}")
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
