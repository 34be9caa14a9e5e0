"""Here-documents in RUN, COPY and ADD, built on the real kernel, as BuildKit runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _cat(cli, image: str, *paths: str) -> str:
    return cli.ok("run", "--rm", image, "cat", *paths)


def test_run_heredoc_alone_is_a_shell_script_and_a_shebang_runs_as_a_program(cli, bb, tmp_path):
    dockerfile = (
        "FROM bb:1\n"
        "ENV WHO=world\n"
        "RUN <<EOF\n"
        "set -e\n"
        'echo "hello $WHO" > /one\n'
        "echo second line >> /one\n"
        "EOF\n"
        "RUN <<'SCRIPT'\n"
        "#!/bin/sh -e\n"
        'echo "script $0 as $(id -u)" > /two\n'
        "SCRIPT\n"
        "RUN <<-EOF\n"
        "\tif true; then\n"
        "\t\techo tabs gone > /three\n"
        "\tfi\n"
        "\tEOF\n"
        'CMD ["true"]\n'
    )
    ctx = _context(tmp_path, dockerfile)
    out = cli.ok("build", "-t", "h:1", str(ctx))
    assert "Step 6/6 : CMD" in out  # the bodies are not instructions
    assert _cat(cli, "h:1", "/one") == "hello world\nsecond line\n"
    assert _cat(cli, "h:1", "/two") == "script /dev/pipes/SCRIPT as 0\n"
    assert _cat(cli, "h:1", "/three") == "tabs gone\n"
    # The script was bound over /dev for the step only: not in any layer.
    assert cli("run", "--rm", "h:1", "ls", "/dev/pipes").returncode != 0
    layers = json.loads(cli.ok("image", "inspect", "h:1"))[0]["RootFS"]["Layers"]
    assert len(layers) == 4


def test_run_command_with_heredocs_gives_them_to_the_shell(cli, bb, tmp_path):
    dockerfile = (
        "FROM bb:1\n"
        "ARG GREETING=hi\n"
        "RUN cat <<A <<'B' > /both && wc -l < /both > /count\n"
        "$GREETING from a\n"
        "A\n"
        "$GREETING stays\n"
        "B\n"
    )
    ctx = _context(tmp_path, dockerfile)
    cli.ok("build", "-t", "h:2", str(ctx))
    # sh reads both here-documents; only the last one feeds cat's stdin.
    assert _cat(cli, "h:2", "/both") == "$GREETING stays\n"
    assert _cat(cli, "h:2", "/count").strip() == "1"
    (ctx / "Dockerfile").write_text("FROM bb:1\nARG GREETING=hi\nRUN sh -s <<EOF > /out\necho $GREETING \\$0\nEOF\n")
    cli.ok("build", "-t", "h:3", str(ctx))
    assert _cat(cli, "h:3", "/out") == "hi sh\n"


def test_copy_heredocs_make_files_expanded_unless_quoted_with_chown_and_chmod(cli, bb, tmp_path):
    dockerfile = (
        "FROM bb:1\n"
        "ARG NAME=app\n"
        "ENV PORT=8080\n"
        "COPY <<EOF /etc/app.conf\n"
        'name="$NAME" port=${PORT} literal=\\$PORT\n'
        "EOF\n"
        'COPY --chown=1000:1001 --chmod=0750 <<one <<"two" /opt/dir/\n'
        "#!/bin/sh\n"
        "one\n"
        "$NAME raw\n"
        "two\n"
        "COPY <<.dockerignore /ignored/\n"
        "*\n"
        ".dockerignore\n"
    )
    ctx = _context(tmp_path, dockerfile)
    cli.ok("build", "-t", "h:4", str(ctx))
    assert _cat(cli, "h:4", "/etc/app.conf") == 'name="app" port=8080 literal=$PORT\n'
    assert _cat(cli, "h:4", "/opt/dir/one", "/opt/dir/two") == "#!/bin/sh\n$NAME raw\n"
    assert _cat(cli, "h:4", "/ignored/.dockerignore") == "*\n"  # a file, not rules
    listing = cli.ok("run", "--rm", "h:4", "stat", "-c", "%n %a %u:%g", "/etc/app.conf", "/opt/dir/one", "/opt/dir/two")
    assert listing.splitlines() == ["/etc/app.conf 644 0:0", "/opt/dir/one 750 1000:1001", "/opt/dir/two 750 1000:1001"]
    assert os.listdir(cli.root / "tmp") == []


def test_the_cache_key_holds_the_heredoc_bodies(cli, bb, tmp_path):
    template = "FROM bb:1\nRUN <<EOF\necho {0} > /r\nEOF\nCOPY <<EOF /c\n{0}\nEOF\n"
    ctx = _context(tmp_path, template.format("first"))
    cli.ok("build", "-t", "h:5", str(ctx))
    again = cli.ok("build", "-t", "h:5", str(ctx))
    assert again.count(" ---> Using cache") == 2 and " ---> Running in" not in again
    (ctx / "Dockerfile").write_text(template.format("second"))
    out = cli.ok("build", "-t", "h:6", str(ctx))
    assert " ---> Running in" in out  # the RUN ran again
    assert _cat(cli, "h:6", "/r", "/c") == "second\nsecond\n"
    assert _cat(cli, "h:5", "/r", "/c") == "first\nfirst\n"


@pytest.mark.parametrize(
    ("dockerfile", "needle"),
    [
        ("FROM bb:1\nRUN <<EOF\ntrue\n", "Dockerfile:2: RUN: unterminated heredoc EOF"),
        ("FROM bb:1\n\nRUN <<EOF\nexit 4\nEOF\n", "Dockerfile:3: RUN:"),
        ("FROM bb:1\nCOPY <<EOF f.txt /d/\nx\nEOF\n", "Dockerfile:2: COPY: here-documents and files"),
    ],
)
def test_bad_heredocs_fail_with_the_line_and_leave_nothing(cli, bb, tmp_path, dockerfile, needle):
    ctx = _context(tmp_path, dockerfile)
    (ctx / "f.txt").write_text("f\n")
    layers_before = set(os.listdir(cli.root / "layers"))
    result = cli("build", "-t", "bad:1", str(ctx))
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert set(os.listdir(cli.root / "layers")) == layers_before
    assert os.listdir(cli.root / "tmp") == []
