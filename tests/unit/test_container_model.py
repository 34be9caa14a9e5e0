"""The typed container model: the stored document read and written back
unchanged, `create` writing the documents it always wrote, `inspect`
printing what it always printed, and no module but the model and the store
reading the document as a dict.

tests/data/container_configs.json holds documents as `overlayctl create`
wrote them before the model existed (one per kind of option), plus a few
hand-made ones an older store may hold. tests/data/container_inspect.json
holds what `inspect` printed for each, before the model existed, with the
store root written as <ROOT>; `python -m tests.unit.test_container_model`
writes it again (only ever from a trusted version of the code).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from overlayctl.container.model import ContainerConfig, Device, HostConfig, LimitOptions, Mount, RestartPolicy
from overlayctl.paths import Paths
from overlayctl.store import Store
from overlayctl.util import jsonio

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "tests" / "data" / "container_configs.json"
INSPECTS = REPO / "tests" / "data" / "container_inspect.json"
DOCS: dict[str, dict] = json.loads(CONFIGS.read_text())
IMAGE_ID = "sha256:" + "4" * 64
IMAGE_CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {},
    "rootfs": {"type": "layers", "diff_ids": []},
}
WHERE_MADE = "/tmp/fixture"  # the directory the bind mounts of the fixture were made in


@pytest.mark.parametrize("name", sorted(DOCS))
def test_a_stored_document_is_written_back_as_it_was(name: str) -> None:
    doc = DOCS[name]
    model = ContainerConfig.from_json(doc)
    # Key order included: inspect prints the keys in the order stored.
    assert jsonio.dumps(model.to_json()) == jsonio.dumps(doc)
    assert ContainerConfig.from_json(model.to_json()) == model


def test_the_model_reads_every_key() -> None:
    model = ContainerConfig.from_json(DOCS["full"])
    cfg, host = model.config, model.host
    assert (cfg.hostname, cfg.user, cfg.working_dir) == ("box", "1000:1000", "/tmp") and cfg.tty and cfg.open_stdin
    assert cfg.argv == ["sh", "-c", "echo hi"] and (cfg.stop_signal, cfg.stop_timeout) == ("SIGQUIT", 30)
    assert host.network == "none" and host.log_driver == "json-file" and host.restart_name == "no"
    assert host.log_config is not None and host.log_config.config == {"max-size": "1k", "max-file": "3"}
    assert (host.cap_add, host.cap_drop, host.readonly_rootfs) == (["NET_ADMIN"], ["CHOWN"], True)
    assert host.devices == [Device("/dev/null", "/dev/n", "rw"), Device("/dev/zero", "/dev/zero", "rwm")]
    assert host.resources is not None and (host.resources.memory, host.resources.nano_cpus) == (64 << 20, 500_000_000)
    assert host.limits == LimitOptions("64m", "128m", "50", "0.5", "512")
    assert host.mounts is not None and [m.type for m in host.mounts] == ["volume", "bind", "bind"] + ["volume"] * 2 + [
        "tmpfs"
    ]
    tmpfs = host.mounts[-1].tmpfs_options
    assert tmpfs is not None and (tmpfs.size_bytes, tmpfs.mode, tmpfs.options) == (65536, 0o1777, "uid=5,noexec")
    assert not model.extra and not cfg.extra and not host.extra


def test_an_older_document_keeps_what_the_model_does_not_know() -> None:
    model = ContainerConfig.from_json(DOCS["unknown-keys"])
    # NetworkingConfig is known since containers join several networks.
    assert not model.extra and model.networking is not None and model.networking.endpoints == {}
    assert model.config.extra == {} and model.host.extra == {"KernelMemoryTCP": ["1.1.1.1"]}
    assert model.config.labels == {"a": "b"}  # known since containers take labels
    assert model.host.log_config is None and model.host.log_driver == "json-file"
    assert model.host.restart_policy == RestartPolicy.from_json({"Name": "always", "MaximumRetryCount": 0, "Extra": 1})
    assert model.host.mounts is not None and model.host.mounts[0].extra == {"Consistency": "default"}
    # Defaults where a key is missing, and nothing written for them.
    empty = ContainerConfig.from_json({})
    assert empty.host.network == "none" and empty.config.argv == [] and empty.to_json() == {}


def test_a_change_is_written_where_a_create_writes_it() -> None:
    model = ContainerConfig.from_json(DOCS["plain"])
    model.host.mounts = [Mount("volume", "v", "/v")]
    model.config.stop_timeout = 5
    doc = model.to_json()
    assert list(doc["HostConfig"])[-1] == "Mounts" and list(doc["Config"])[-1] == "StopTimeout"
    assert doc["HostConfig"]["Mounts"] == [{"Type": "volume", "Source": "v", "Target": "/v", "ReadOnly": False}]
    # A document made here is today's: every always-written key, in order.
    fresh = ContainerConfig()
    assert list(fresh.to_json()["HostConfig"]) == ["AutoRemove", "NetworkMode", "RestartPolicy", "LogConfig"]
    assert HostConfig(privileged=False).to_json().get("Privileged") is None


def test_a_document_made_from_the_model_shares_nothing_with_it() -> None:
    model = ContainerConfig.from_json(DOCS["full"])
    doc = model.to_json()
    doc["HostConfig"]["CapAdd"].append("X")
    doc["Config"]["Env"].clear()
    doc["HostConfig"]["LogConfig"]["Config"]["tag"] = "t"
    assert model.to_json() == DOCS["full"]


# --- create writes what it wrote ---------------------------------------------------

# The fixture's documents, and the options that made them (ipnet needs a
# network, bridge and plain are the same document).
CREATED = {
    "plain": ["bb:1", "true"],
    "full": [
        "--name", "full", "-t", "-i", "-e", "A=1", "-e", "B=two", "-w", "/tmp", "-h", "box", "-u", "1000:1000",
        "--entrypoint", "sh", "--network", "none", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN", "--read-only",
        "--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined",
        "--device", "/dev/null:/dev/n:rw", "--device", "/dev/zero", "--memory", "64m", "--memory-swap", "128m",
        "--pids-limit", "50", "--cpus", "0.5", "--cpu-shares", "512", "--log-opt", "max-size=1k",
        "--log-opt", "max-file=3", "--stop-signal", "SIGQUIT", "--stop-timeout", "30", "-v", "vol1:/data",
        "-v", f"{WHERE_MADE}/hostdir:/mnt:ro", "-v", f"{WHERE_MADE}/newdir:/new",
        "--tmpfs", "/scratch:size=64k,mode=1777,uid=5", "--mount", "type=volume,target=/nocopy,volume-nocopy",
        "--mount", "type=volume,source=lab,target=/lab,volume-label=a=b", "bb:1", "-c", "echo hi",
    ],
    "rm": ["--rm", "--cap-drop", "ALL", "--privileged", "--memory", "16m", "--log-driver", "none", "bb:1", "sh"],
    "restart": ["--restart", "on-failure:3", "--network", "host", "--entrypoint", "", "bb:1", "echo", "x"],
    "cpus": ["--cpus", "1.5", "--restart", "unless-stopped", "-v", "/anon", "bb:1", "sleep", "1"],
}  # fmt: skip


def _store(tmp_path: Path) -> Store:
    store = Store(Paths(str(tmp_path / "root"), str(tmp_path / "run")))
    store.conn.execute(
        "INSERT INTO images (id, config, created) VALUES (?, ?, '')", (IMAGE_ID, jsonio.dumps(IMAGE_CONFIG))
    )
    store.conn.commit()
    return store


def _relocated(value: object, old: str, new: str) -> object:
    return json.loads(json.dumps(value).replace(old, new))


@pytest.mark.parametrize("name", sorted(CREATED))
def test_create_writes_the_documents_it_wrote(tmp_path: Path, name: str) -> None:
    from overlayctl.cli import runopts
    from overlayctl.cli.common import create_options
    from overlayctl.engine.containers import _create

    argv = [a.replace(WHERE_MADE, str(tmp_path)) for a in CREATED[name]]
    values, rest = runopts.parse(argv, runopts.CREATE_OPTIONS)
    store = _store(tmp_path)
    try:
        container = _create(store, create_options(values, rest[0], rest[1:]), store.images.get(IMAGE_ID))
        stored = store.conn.execute("SELECT config FROM containers WHERE id = ?", (container.id,)).fetchone()[0]
    finally:
        store.close()
    expected = _relocated(DOCS[name], WHERE_MADE, str(tmp_path))
    doc = json.loads(stored)
    for mine, theirs in zip(doc["HostConfig"].get("Mounts", []), expected["HostConfig"].get("Mounts", []), strict=True):
        if mine["Type"] == "volume" and len(theirs["Source"]) == 64:
            theirs["Source"] = mine["Source"]  # an anonymous volume's random name
    assert stored == jsonio.dumps(expected)


# --- inspect prints what it printed -------------------------------------------------


def inspect_outputs(tmp_path: Path) -> dict[str, str]:
    """`inspect` of each fixture document, stored as a created container
    in a store under tmp_path (printed as the CLI prints it)."""
    from overlayctl.engine.inspect import container_inspect

    store = _store(tmp_path)
    out = {}
    try:
        for n, name in enumerate(sorted(DOCS)):
            container_id = f"{n:02d}" * 32
            store.conn.execute(
                "INSERT INTO containers (id, name, image_id, image_name, config, created, status) "
                "VALUES (?, ?, ?, 'bb:1', ?, '2026-12-06T18:00:00.000000000Z', 'created')",
                (container_id, name, IMAGE_ID, jsonio.dumps(DOCS[name])),
            )
            store.conn.commit()
            text = jsonio.pretty([container_inspect(store, store.containers.get(container_id))])
            out[name] = text.replace(str(tmp_path), "<ROOT>")
    finally:
        store.close()
    return out


def test_inspect_prints_what_it_printed(tmp_path: Path) -> None:
    expected = json.loads(INSPECTS.read_text())
    got = inspect_outputs(tmp_path)
    assert sorted(got) == sorted(expected)
    for name in sorted(got):
        assert got[name] == expected[name], name


# --- nobody else reads the document as a dict ---------------------------------------

PACKAGE = REPO / "overlayctl"
OWNERS = {"container/model.py", "store/containers.py"}
DOCUMENT_KEYS = {"Config", "HostConfig"}
# Modules that handle image configs (OCI's "config"/"Config" keys), not containers'.
IMAGE_MODULES = ("oci/", "image/", "builder/", "store/images.py", "store/buildcache.py", "layer/")


def _reads_document(node: ast.AST) -> str | None:
    """The key, if node reads a container document's Config or HostConfig as
    a dict: `x.config["HostConfig"]`, `x.config.get("Config")`, or any
    `["HostConfig"]` / `.get("HostConfig")`."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        key, owner = node.slice.value, node.value
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("get", "pop", "setdefault")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        key, owner = node.args[0].value, node.func.value
    else:
        return None
    if key == "HostConfig":
        return key
    if key == "Config" and isinstance(owner, ast.Attribute) and owner.attr == "config":
        return key  # container.config["Config"]; an image's is image.config["config"]
    return None


def document_reads(source: str, filename: str) -> list[str]:
    """Each dict read of a container document in source, as 'file:line key'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        key = _reads_document(node)
        if key is not None:
            found.append((node.lineno, f"{filename}:{node.lineno} {key}"))
    return [text for _, text in sorted(found)]


def test_only_the_model_and_the_store_read_the_document_as_a_dict() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in OWNERS or rel.startswith(IMAGE_MODULES):
            continue
        found += document_reads(path.read_text(), rel)
    assert not found, "read the typed model (overlayctl.container.model) instead:\n" + "\n".join(found)


def test_the_scan_sees_what_it_must() -> None:
    source = (
        "a = container.config['HostConfig']\n"
        "b = container.config.get('HostConfig', {})\n"
        "c = found.config['Config'].get('StopSignal')\n"
        "d = self.container.config.get('Config', {})\n"
        "e = hc['HostConfig']\n"
        "f = image.config['config']\n"  # an image's: not a container's
        "g = manifest['Config']\n"  # an archive manifest's
    )
    assert [line.split(":")[1] for line in document_reads(source, "x.py")] == [
        "1 HostConfig",
        "2 HostConfig",
        "3 Config",
        "4 Config",
        "5 HostConfig",
    ]


def test_the_model_is_pure_data() -> None:
    tree = ast.parse((PACKAGE / "container" / "model.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names} | {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"__future__", "collections.abc", "typing", "overlayctl.errors"}, imported


def _write_inspect_fixture() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outputs = inspect_outputs(Path(tmp))
    INSPECTS.write_text(json.dumps(outputs, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    _write_inspect_fixture()


def test_networking_config_lists_every_network_and_round_trips() -> None:
    from overlayctl.container.model import EndpointConfig, IPAMConfig

    # Without NetworkingConfig the one network is NetworkMode with IPAddress.
    plain = ContainerConfig.from_json(DOCS["ipnet"])
    assert list(plain.endpoints()) == ["appnet"] and plain.endpoints()["appnet"].ip == "10.231.7.9"
    assert plain.networking is None and "NetworkingConfig" not in plain.to_json()
    # Once written, it is the list (the primary may even have left it).
    plain.set_endpoints({"back": EndpointConfig(IPAMConfig("10.1.0.5"), ["db"], "02:42:0a:01:00:05")})
    doc = plain.to_json()
    assert doc["NetworkingConfig"] == {
        "EndpointsConfig": {
            "back": {"IPAMConfig": {"IPv4Address": "10.1.0.5"}, "Aliases": ["db"], "MacAddress": "02:42:0a:01:00:05"}
        }
    }
    again = ContainerConfig.from_json(doc)
    assert again == plain and jsonio.dumps(again.to_json()) == jsonio.dumps(doc)
    assert list(again.endpoints()) == ["back"] and again.endpoints()["back"].aliases == ["db"]
    assert again.host.network == "appnet"  # NetworkMode stays the primary network
