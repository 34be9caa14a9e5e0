"""The size limit of a container's writable layer, as the user gives it:
`--storage-opt size=SIZE` per container, and a default for every container
in the store's configuration file, ``<root>/storage.json``.

Docker's overlay2 driver takes one per-container option, ``size`` (its key
read in any case), and a daemon option ``overlay2.size`` for every
container; podman's storage.conf calls the default ``size``. The file
takes either name::

    {"storage-opts": ["size=10G"]}

A per-container ``size`` overrides the default, and ``size=0`` means no
limit (for the default: no default). Sizes are Docker's (util/sizes.py).
The limit itself (a project ID and its quota) is the container store's.

Every create reads the file (`run` included), so this module imports
nothing more until there is something to parse: no file, nothing to pay.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from overlayctl.paths import Paths

_FILE_KEYS = ("storage-opts",)
# The file's names for the default size: podman's and Docker's daemon's.
_DEFAULT_SIZE_KEYS = ("size", "overlay2.size")


def parse_storage_opts(items: Iterable[str]) -> dict[str, str]:
    """The `--storage-opt KEY=VALUE` options as HostConfig.StorageOpt
    records them ({"size": "10G"}, the value as given, the last one
    winning as in Docker's map); anything but a valid size is refused."""
    from overlayctl.util.sizes import parse_size

    opts: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            # Docker's CLI: "invalid storage option".
            raise InvalidArgumentError(f'invalid storage option "{item}": give KEY=VALUE, e.g. --storage-opt size=10G')
        if key.lower() != "size":
            # Docker's overlay2: "Unknown option KEY".
            raise InvalidArgumentError(
                f"Unknown option {key} for --storage-opt: the only one is size (e.g. --storage-opt size=10G)"
            )
        parse_size(value, "--storage-opt size")
        opts["size"] = value
    return opts


def size_of(storage_opt: dict[str, str]) -> int | None:
    """The bytes of a HostConfig.StorageOpt's size; None when it has none
    (then the store's default applies), 0 for no limit."""
    from overlayctl.util.sizes import parse_size

    text = storage_opt.get("size")
    return None if text is None else parse_size(text, "--storage-opt size")


class StorageConfig:
    """The store's storage.json as read: its path, the default size as
    written (None when there is none) and in bytes (0: no limit)."""

    __slots__ = ("path", "size_text", "size")

    def __init__(self, path: str, size_text: str | None = None, size: int = 0) -> None:
        self.path = path
        self.size_text = size_text
        self.size = size


def read_config(paths: Paths) -> StorageConfig:
    """``<root>/storage.json``, read now (a create reads it each time, so
    an edit applies to the next container); no file is no default. Bad
    content is one line naming the file."""
    path = paths.storage_config
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return StorageConfig(path)
    except OSError as e:
        raise StoreError(f"cannot read the store's configuration {path}: {e.strerror}") from None
    return parse_config(raw, path)


def parse_config(raw: bytes, path: str) -> StorageConfig:
    """storage.json's content (read from ``path``, which errors name)."""
    import json

    from overlayctl.util.sizes import parse_size

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise StoreError(f'{path}: must be a JSON object such as {{"storage-opts": ["size=10G"]}}')
    for key in data:
        if key not in _FILE_KEYS:
            raise StoreError(f'{path}: unknown key "{key}": the only one is "storage-opts"')
    opts = data.get("storage-opts", [])
    if not isinstance(opts, list) or not all(isinstance(item, str) for item in opts):
        raise StoreError(f'{path}: "storage-opts" must be a list of strings such as "size=10G"')
    config = StorageConfig(path)
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep or key.lower() not in _DEFAULT_SIZE_KEYS:
            raise StoreError(
                f'{path}: unknown storage option "{item}": the only one is size=SIZE (or overlay2.size=SIZE)'
            )
        try:
            config.size = parse_size(value, key)
        except InvalidArgumentError:
            raise StoreError(f'{path}: invalid size "{value}" in "{item}" (e.g. size=10G)') from None
        config.size_text = value
    return config


def resolve(paths: Paths, storage_opt: dict[str, str] | None) -> tuple[dict[str, str] | None, int | None]:
    """What a container created with ``storage_opt`` (its --storage-opt,
    parsed) gets: (the HostConfig.StorageOpt to record, the size limit in
    bytes or None for none).

    Its own size wins, ``0`` being no limit; else the store's default,
    recorded as {"size": "<the file's text>"}: Docker leaves StorageOpt
    null for its daemon's default, but the limit is fixed at create (a
    later edit of the file changes only later containers), so inspect, and
    the start that must know whether the container is limited, read it
    from the container. The file is read even when overridden: a broken
    one is refused at every create, not only at some."""
    config = read_config(paths)
    if storage_opt:
        return storage_opt, size_of(storage_opt) or None
    if config.size:
        return {"size": config.size_text or str(config.size)}, config.size
    return None, None
