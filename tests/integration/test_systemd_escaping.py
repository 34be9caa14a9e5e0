"""Generated units cannot be steered: whatever a container's name, binds,
store paths, environment or command hold, `generate systemd` gives either a
one-line refusal or a unit that systemd reads back as meant.

"As meant" is judged by systemd itself, not by a second copy of our
quoting: `systemd-analyze verify` loads the unit into a test manager and,
at debug log level, dumps it as parsed (unit_dump(): each command line as
`Command Line: ...`, each RequiresMountsFor= path). The only parser here is
for that dump's shell-style quoting, which is systemd's own output format.
$VAR expansion happens when the command runs, not at load: the dump still
holds `$$`, and `_after_exec_expansion` applies systemd.service(5)'s rule.

A container's command, environment and image do not go into its unit (the
unit runs `overlayctl start -a`): they are random too, and must change
nothing. The executable, --root and --runroot do, as command words.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from overlayctl.container.model import ContainerConfig
from overlayctl.errors import InvalidArgumentError
from overlayctl.store.containers import Container
from overlayctl.systemd import units as systemd

# The closing quote a quoting function adds lands in the comment line.
ATTACK = "x\n[Service]\nExecStartPre=/bin/sh -c 'touch /tmp/pwned'\n#"
# Characters that have a meaning somewhere in a unit, so that examples hit
# them far more often than uniform text would.
SPECIAL = list("\n\r\0\t \"'\\%$;#=[]@-:+!/.\x01\x1b\x7f\x85\xa0\u2028\ufdd0\ufffe") + [
    "\U0010ffff",
    "é",
    "%i",
    "$HOME",
]


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is missing (package systemd, see scripts/setup.sh)")
    return found


# --- systemd's own reading of a unit ------------------------------------------


def _dump(unit: Path) -> list[bytes]:
    """The lines of `unit` as systemd parsed it; fails when verify does."""
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="debug", SYSTEMD_LOG_COLOR="0")
    result = subprocess.run(
        [_analyze(), "verify", "--man=no", str(unit)], capture_output=True, env=env, cwd=unit.parent
    )
    out = result.stdout + result.stderr
    problems = [
        line for line in out.splitlines() if unit.name.encode() in line and b": " in line and b"job" not in line
    ]
    assert result.returncode == 0, (result.returncode, out[-3000:])
    assert not [p for p in problems if re.search(rb"ignoring|invalid|failed|unknown|not ", p, re.I)], problems
    start = out.index(b"\t-> Unit " + unit.name.encode() + b":\n")
    block = out[start:].split(b"\n")[1:]
    end = next((i for i, line in enumerate(block) if line.startswith(b"\t-> Unit ")), len(block))
    return block[:end]


def _command_line(block: list[bytes], key: str) -> list[bytes]:
    at = block.index(f"\t\t-> {key}:".encode())
    line = block[at + 1]
    assert line.startswith(b"\t\t\tCommand Line: "), line
    return _shell_words(line.removeprefix(b"\t\t\tCommand Line: "))


_ESCAPES = {ord(k): v for k, v in {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}.items()}


def _shell_words(line: bytes) -> list[bytes]:
    """Undo quote_command_line(): words apart by one space, bare or in ""
    with \\" \\\\ \\` \\$ and C escapes (\\n, \\NNN octal) inside."""
    words, i = [], 0
    while i < len(line):
        word = bytearray()
        if line[i] != ord('"'):
            end = line.find(b" ", i)
            end = len(line) if end < 0 else end
            word += line[i:end]
            assert b"\\" not in word and b'"' not in word, line
            i = end
        else:
            i += 1
            while line[i] != ord('"'):
                if line[i] != ord("\\"):
                    word.append(line[i])
                    i += 1
                elif line[i + 1] in b'"\\`$':
                    word.append(line[i + 1])
                    i += 2
                elif line[i + 1] in _ESCAPES:
                    word.append(_ESCAPES[line[i + 1]])
                    i += 2
                else:
                    assert re.fullmatch(rb"[0-7]{3}", line[i + 1 : i + 4]), ("unknown escape", line[i:])
                    word.append(int(line[i + 1 : i + 4], 8))
                    i += 4
            i += 1
        words.append(bytes(word))
        assert i == len(line) or line[i] == ord(" "), line
        i += 1
    return words


def _after_exec_expansion(word: bytes) -> bytes:
    """What systemd passes to execve for a loaded word: $$ is a $, and a lone
    $ would expand a variable (which must not happen)."""
    assert b"$" not in word.replace(b"$$", b""), ("a variable would be expanded", word)
    return word.replace(b"$$", b"$")


def _requires_mounts_for(block: list[bytes]) -> set[bytes]:
    paths = set()
    for line in block:
        if line.startswith(b"\t\tRequiresMountsFor: ") and line.endswith(b" (origin-file)"):
            paths.add(line.removeprefix(b"\t\tRequiresMountsFor: ").removesuffix(b" (origin-file)"))
    return paths


# --- what may go in -------------------------------------------------------------

# Anything at all, undecodable bytes included (os.fsdecode's surrogate escapes).
anything = st.one_of(
    st.lists(st.one_of(st.sampled_from(SPECIAL), st.characters()), max_size=12).map("".join),
    st.binary(max_size=12).map(os.fsdecode),
)
# What every setting can carry; most draws are these, so that most examples
# reach systemd instead of a refusal.
carriable = st.lists(
    st.one_of(
        st.sampled_from([c for c in SPECIAL if c.isprintable() and c != "\ufdd0"]),
        st.characters(blacklist_categories=("Cc", "Cs", "Cn")),
    ),
    max_size=12,
).map("".join)
texts = st.integers(0, 9).flatmap(lambda n: anything if n == 0 else carriable)


def _component(text: str) -> str:
    text = text.replace("/", "_").replace("\0", "_")
    return text + "x" if text in ("", ".", "..") else text


components = texts.map(_component)
paths = st.lists(components, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))


def _refusal_allowed(values: list[str], executable: str = "/bin/true") -> bool:
    """A refusal is only right when a value holds what a unit cannot carry:
    every such character is one str.isprintable() calls unprintable, and a
    program's path cannot hold a quote, backslash or $ (systemd.service(5))."""
    unsafe = not executable.isprintable() or any(c in executable for c in "\"'\\$")
    return unsafe or any(not value.isprintable() or value.endswith("\\") for value in values)


def _container(name: str, binds: list[str], env: list[str], argv: list[str], image: str) -> Container:
    mounts = [{"Type": "bind", "Source": s, "Target": f"/b{i}", "ReadOnly": i % 2 == 0} for i, s in enumerate(binds)]
    config = {
        "Config": {"Cmd": argv, "Env": env, "Image": image},
        "HostConfig": {"NetworkMode": "bridge", "Mounts": mounts},
    }
    return Container(
        "ab" * 32, name, "cd" * 32, image, ContainerConfig.from_json(config), "", "created", 0, 0, None, "", "", ""
    )


def _executable(where: Path, name: str) -> str:
    """A real executable file called `name` (verify checks Exec*= paths exist)."""
    path = os.fsencode(str(where)) + b"/" + os.fsencode(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o755)
    os.close(fd)
    return os.fsdecode(path)


# --- the property -----------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=texts,
    binds=st.lists(paths, max_size=2),
    root=paths,
    runroot=paths,
    exe_name=components,
    env=st.lists(texts, max_size=2),
    argv=st.lists(texts, max_size=3),
    image=texts,
)
@example(name="web", binds=[ATTACK], root="/srv/s", runroot="/run/r", exe_name="octl", env=[], argv=[], image="bb")
@example(
    name="a b", binds=["/a b/%i", '/q"\\'], root="/r $x", runroot="/r;", exe_name="\udcff", env=[], argv=[], image=""
)
def test_any_container_gives_a_unit_systemd_reads_as_meant_or_a_refusal(
    name: str,
    binds: list[str],
    root: str,
    runroot: str,
    exe_name: str,
    env: list[str],
    argv: list[str],
    image: str,
) -> None:
    container = _container(name, binds, env, argv, image)
    with tempfile.TemporaryDirectory(prefix="units-") as work:
        executable = _executable(Path(work), exe_name)
        try:
            text = systemd.generate_unit(container, root=root, runroot=runroot, executable=executable)
        except InvalidArgumentError as e:
            assert "\n" not in str(e) and "\r" not in str(e)
            assert _refusal_allowed([name, *binds, root, runroot], executable), str(e)
            event("refused")
            return
        unit = Path(work) / systemd.unit_name(container)
        unit.write_text(text, errors="strict")
        block = _dump(unit)
    meant = [executable, "--root", root, "--runroot", runroot, "start", "-a", container.id]
    got = [_after_exec_expansion(word) for word in _command_line(block, "ExecStart")]
    assert got == [os.fsencode(word) for word in meant]
    stop = [_after_exec_expansion(word) for word in _command_line(block, "ExecStop")]
    assert stop == [os.fsencode(word) for word in [*meant[:5], "stop", container.id]]
    mounts, meant_mounts = _requires_mounts_for(block), {os.fsencode(p) for p in [root, runroot, *binds]}
    assert meant_mounts <= mounts and mounts - meant_mounts <= {b"/tmp", b"/var/tmp"}  # those of PrivateTmp=
    description = next(line for line in block if line.startswith(b"\t\tDescription: "))
    # systemd strips the blanks (only space and tab) around a value.
    assert description == f"\t\tDescription: overlayctl container {name}".rstrip(" \t").encode()


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=st.lists(texts, min_size=1, max_size=6))
@example(argv=["", " ", "a\tb", "%%i", "$$", "${X}", ";", "\\", '"', "'", "\\x41", "\udc80\udcff", "\x1b[0m"])
def test_any_argv_is_the_command_systemd_runs_or_a_refusal(argv: list[str]) -> None:
    try:
        words = [systemd.exec_quote(word) for word in argv]
    except InvalidArgumentError as e:
        assert "\n" not in str(e) and "\r" not in str(e)
        assert any(c in word for word in argv for c in "\n\r\0"), str(e)
        event("refused")
        return
    with tempfile.TemporaryDirectory(prefix="units-") as work:
        unit = Path(work) / "argv.service"
        unit.write_text(f"[Service]\nExecStart=/bin/echo {' '.join(words)}\n", errors="strict")
        got = [_after_exec_expansion(word) for word in _command_line(_dump(unit), "ExecStart")]
    assert got == [b"/bin/echo", *(os.fsencode(word) for word in argv)]


# --- the attack: a bind path that writes its own ExecStartPre= ------------------


def test_a_bind_path_cannot_add_lines_to_the_unit(cli, bb, tmp_path: Path) -> None:
    """A directory whose name is unit syntax, bound into a container, must
    not reach the unit as lines of their own ([Service], ExecStartPre=)."""
    source = tmp_path / ATTACK
    source.mkdir(parents=True)  # its slashes make it a few nested directories
    cli.ok("create", "--name", "web", "-v", f"{source}:/data", "bb:1", "true")
    result = cli("generate", "systemd", "--name", "web")
    out = result.stdout.decode()
    injected = [line for line in out.splitlines() if line.startswith("ExecStartPre=")]
    assert not injected and out.count("[Service]") <= 1, f"the bind path wrote lines of its own into the unit:\n{out}"
    assert result.returncode == 125, (result.returncode, out, result.stderr)
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "newline" in err, err
    assert not Path("/tmp/pwned").exists()
