"""docs/cli.md is generated from the click application and must match it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_cli_doc", REPO / "scripts" / "gen-cli-doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_doc_is_current() -> None:
    committed = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert _generator().render() == committed, "docs/cli.md is stale: run scripts/gen-cli-doc.py"


def test_cli_doc_names_every_command_and_option() -> None:
    """The generator walks the whole tree: a command or a flag click knows
    is never left out of the page."""
    import click

    from overlayctl.cli.app import cli

    generator = _generator()
    text = generator.render()
    headings = [line for line in text.splitlines() if line.startswith("#")]

    def walk(command: click.Command, path: list[str], aliases: list[str]) -> None:
        title = " ".join(path)
        heading = [h for h in headings if h.split(" ", 1)[1].split(" (also:")[0] == title]
        assert heading, f"{title} missing from docs/cli.md"
        for alias in aliases:
            assert f"`{alias}`" in heading[0], f"{title}: alias {alias} missing"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for flag in param.opts:
                    assert f"`{flag}`" in text, f"{title}: {flag} missing"
        if isinstance(command, click.Group):
            for names, sub in generator._by_command(command):
                walk(sub, path + [names[0]], names[1:])

    walk(cli, ["overlayctl"], [])
