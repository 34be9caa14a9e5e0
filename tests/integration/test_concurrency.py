"""Many overlayctl processes on one store at once: nothing fails, shared
layers are stored once, and a layer never vanishes under a command that
relies on it (leases)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

NONE = ("--network", "none")


def spawn(cli, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cli.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or cli.env)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, finish(proc)
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def layer_rows(cli) -> list[str]:
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        return [row[0] for row in conn.execute("SELECT diff_id FROM layers")]
    finally:
        conn.close()


def test_a_hundred_concurrent_detached_runs(cli, bb):
    procs = [spawn(cli, "run", "-d", "--name", f"c{i}", *NONE, "bb:1", "sleep", "300") for i in range(100)]
    results = [finish(p) for p in procs]
    try:
        failures = [r for r in results if r[0] != 0 or r[2]]
        assert failures == [], failures[:3]
        running = cli.ok("ps", "-q", "--no-trunc").split()
        assert sorted(running) == sorted(r[1].strip() for r in results)
    finally:
        ids = cli.ok("ps", "-aq").split()
        if ids:
            cli.ok("rm", "-f", *ids)


def test_twenty_concurrent_builds_share_their_base(cli, bb, tmp_path):
    procs = []
    for i in range(20):
        ctx = tmp_path / f"ctx{i}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM bb:1\nRUN echo {i} > /own\n")
        procs.append(spawn(cli, "build", "-q", "-t", f"b{i}:1", str(ctx)))
    results = [finish(p) for p in procs]
    # A build that waits for another's layer commit says so on stderr; it never fails.
    failures = [r for r in results if r[0] != 0]
    assert failures == [], failures[:3]
    base = json.loads(cli.ok("image", "inspect", "bb:1"))[0]["RootFS"]["Layers"]
    layers = layer_rows(cli)
    assert len(layers) == len(base) + 20 and set(base) <= set(layers)
    assert cli.ok("run", "--rm", *NONE, "b7:1", "cat", "/own") == "7\n"
    assert cli.ok("system", "fsck") == "no problems found\n"


def paused(cli, point: str, tmp_path: Path) -> tuple[dict, Path]:
    gate = tmp_path / f"gate-{point}"
    return dict(cli.env, OVERLAYCTL_FAULTS=f"{point}=pause:{gate}"), gate


def test_removing_the_base_during_a_build_leaves_its_layers_to_the_build(cli, bb, tmp_path):
    ctx = tmp_path / "base"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo base > /base\n")
    cli.ok("build", "-q", "-t", "base:1", str(ctx))
    base_layers = json.loads(cli.ok("image", "inspect", "base:1"))[0]["RootFS"]["Layers"]
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM base:1\nRUN cat /base > /app\n")
    env, gate = paused(cli, "build-from", tmp_path)
    build = spawn(cli, "build", "-q", "-t", "app:1", str(app), env=env)
    wait_for_file(Path(str(gate) + ".reached"), build)
    # The base goes while the build stands on it: its image, not its layers.
    out = cli.ok("rmi", "base:1").splitlines()
    assert out[0] == "Untagged: base:1" and all(d not in out for d in (f"Deleted: {x}" for x in base_layers))
    cli.ok("rmi", "bb:1")
    out = cli.ok("system", "gc")  # no dangling image or unreferenced layer it may take
    assert out.endswith("Removed 0 items. Total reclaimed space: 0B\n"), out
    gate.touch()
    rc, out, err = finish(build)
    assert rc == 0, err
    assert cli.ok("run", "--rm", *NONE, "app:1", "cat", "/app") == "base\n"
    assert set(base_layers) <= set(json.loads(cli.ok("image", "inspect", "app:1"))[0]["RootFS"]["Layers"])
    assert cli.ok("system", "fsck", "--verify-content") == "no problems found\n"


def test_a_failed_build_drops_its_own_layers_but_not_leased_ones(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo one > /one\nRUN exit 3\n")
    before = set(layer_rows(cli))
    result = cli("build", "-t", "bad:1", str(ctx))
    assert result.returncode != 0
    assert set(layer_rows(cli)) == before
    assert not [n for n in os.listdir(cli.root / "leases") if "sha256:" + n not in before]
