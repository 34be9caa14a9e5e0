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

This module executes; util.goparse lexes and parses, util.gofuncs holds
how Go prints and compares values and the functions.

Data is what a JSON document decodes to (dict, list, str, int, float, bool,
None), or objects whose capitalised attributes are the fields (and, when
callable, the methods) of the Go type named by their GO_TYPE attribute. As
Docker's inspect does, a dict missing a key is an error (Go's
``missingkey=error``); ``Template.option("missingkey=default")`` gives Go's
default, ``<no value>``. An object's ``json_value()``, when it has one, is
what ``json`` encodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from overlayctl.errors import InvalidArgumentError
from overlayctl.util.gofuncs import (
    BUILTINS,
    DOCKER_FUNCS,
    MISSING,
    Func,
    FuncError,
    GoMap,
    go_type,
    printable,
    truth,
    want,
)
from overlayctl.util.goparse import (
    Action,
    Chain,
    Command,
    Control,
    Field,
    Identifier,
    Jump,
    Literal,
    Node,
    ParseError,
    Parser,
    Pipe,
    Text,
    Variable,
    go_quote,
)

__all__ = ["Template", "GoMap", "DOCKER_FUNCS", "printable", "go_type"]


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# ---------------------------------------------------------------- execution


class _State:
    def __init__(self, template: Template, root: Any, out: list[str]) -> None:
        self.template = template
        self.root = root
        self.out = out
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.node: Node | None = None

    def at(self, node: Node) -> None:
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

    def walk(self, dot: Any, nodes: list[Node]) -> None:
        for node in nodes:
            self.walk_one(dot, node)

    def walk_one(self, dot: Any, node: Node) -> None:
        self.at(node)
        if isinstance(node, Text):
            self.out.append(node.text)
        elif isinstance(node, Action):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.out.append(self.print_value(node, value))
        elif isinstance(node, Control):
            mark = len(self.vars)
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                value = self.eval_pipeline(dot, node.pipe)
                if truth(value):
                    self.walk(value if node.kind == "with" else dot, node.body)
                elif node.otherwise is not None:
                    self.walk(dot, node.otherwise)
            del self.vars[mark:]
        elif isinstance(node, Jump):
            raise _Break() if node.kind == "break" else _Continue()

    def print_value(self, node: Node, value: Any) -> str:
        self.at(node)
        return printable(value)

    def walk_range(self, dot: Any, node: Control) -> None:
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

    def eval_pipeline(self, dot: Any, pipe: Pipe) -> Any:
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

    def eval_command(self, dot: Any, cmd: Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, Field):
            return self.eval_field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, Identifier):
            return self.eval_function(dot, first, cmd.args, final)
        if isinstance(first, Pipe):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, Variable):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        assert isinstance(first, Literal)
        if first.kind == "nil":
            self.errorf("nil is not a command")
        return dot if first.kind == "dot" else first.value

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not _NO_FINAL:
            self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_arg(self, dot: Any, node: Node) -> Any:
        self.at(node)
        if isinstance(node, Field):
            return self.eval_field_chain(dot, dot, node, node.idents, [node], _NO_FINAL)
        if isinstance(node, Variable):
            return self.eval_variable(dot, node, [node], _NO_FINAL)
        if isinstance(node, Pipe):
            return self.eval_pipeline(dot, node)
        if isinstance(node, Identifier):
            return self.eval_function(dot, node, [node], _NO_FINAL)
        if isinstance(node, Chain):
            return self.eval_chain(dot, node, [node], _NO_FINAL)
        assert isinstance(node, Literal)
        if node.kind == "dot":
            return dot
        return node.value

    def eval_chain(self, dot: Any, chain: Chain, args: list[Node], final: Any) -> Any:
        self.at(chain)
        if not chain.fields:
            self.errorf("internal error: no fields in evalChainNode")
        if isinstance(chain.node, Literal) and chain.node.kind == "nil":
            self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable(self, dot: Any, variable: Variable, args: list[Node], final: Any) -> Any:
        self.at(variable)
        value = self.var_value(variable.idents[0])
        if len(variable.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, variable, variable.idents[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Node, idents: list[str], args: list[Node], final: Any
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
        self, dot: Any, name: str, node: Node, args: list[Node], final: Any, receiver: Any, static: bool
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
                self.errorf(f"map has no entry for key {go_quote(name)}")
            return MISSING
        if not isinstance(receiver, str | int | float | bool | list | tuple) and name[:1].isupper():
            try:
                member = getattr(receiver, name)
            except AttributeError:
                member = MISSING
            if member is not MISSING:
                if callable(member):
                    return self.call(dot, Func.of(member), name, node, args, final)
                if has_args:
                    self.errorf(f"{name} has arguments but cannot be invoked as function")
                return member
        self.errorf(f"can't evaluate field {name} in type {typ}")

    def eval_function(self, dot: Any, ident: Identifier, args: list[Node], final: Any) -> Any:
        self.at(ident)
        name = ident.name
        function = self.template.funcs[name]
        if name in ("and", "or") and function is BUILTINS[name]:
            return self.eval_and_or(dot, ident, args, final)
        return self.call(dot, function, name, ident, args, final)

    def eval_and_or(self, dot: Any, ident: Identifier, args: list[Node], final: Any) -> Any:
        nodes = args[1:]
        count = len(nodes) + (final is not _NO_FINAL)
        if count < 1:
            self.errorf(f"wrong number of args for {ident.name}: want at least 1 got 0")
        value: Any = None
        for node in nodes:
            value = self.eval_arg(dot, node)
            if truth(value) == (ident.name == "or"):
                return value
        if final is not _NO_FINAL:
            value = final
        return value

    def call(self, dot: Any, function: Func, name: str, node: Node, args: list[Node], final: Any) -> Any:
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
        except FuncError as exc:
            self.at(node)
            self.errorf(f"error calling {name}: {exc}")
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            self.at(node)
            self.errorf(f"error calling {name}: {exc}")

    def checked(self, value: Any, typ: str, node: Node) -> Any:
        try:
            return want(value, typ)
        except FuncError as exc:
            self.at(node)
            self.errorf(str(exc))


_NO_FINAL = object()


class Template:
    """A parsed template; ``execute`` renders it over one value."""

    def __init__(self, text: str, funcs: dict[str, Any] | None = None) -> None:
        """Parse ``text``; raise InvalidArgumentError worded as Docker's
        "template parsing error: template: :LINE: ..." on a bad template."""
        self.text = text
        self.funcs: dict[str, Func] = dict(BUILTINS)
        self.funcs.update(DOCKER_FUNCS)
        for name, function in (funcs or {}).items():
            self.funcs[name] = Func.of(function)
        self.missing_key_error = True
        try:
            self.nodes = Parser(text, self.funcs).parse()
        except ParseError as exc:
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
