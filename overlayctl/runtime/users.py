"""USER and --chown as Docker resolves them: names and ids from the image's
own /etc/passwd and /etc/group, with the user's supplementary groups.

The callers read those two files inside the image's root (a container's
PID 1 and exec, a build's COPY step): never the host's."""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError


class ResolvedUser:
    """Who the container's process runs as."""

    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups  # supplementary groups, the primary one not repeated
        self.home = home

    def __repr__(self) -> str:
        return f"ResolvedUser(uid={self.uid}, gid={self.gid}, groups={self.groups}, home={self.home!r})"


def _entries(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#") and ":" in line]


def _find_group(name: str, groups: list[list[str]]) -> int:
    match = [f for f in groups if len(f) >= 3 and f[0] == name and f[2].isdigit()]
    if not match:
        raise InvalidArgumentError(f"unable to find group {name}: no matching entries in group file")
    return int(match[0][2])


def _find_user(name: str, users: list[list[str]]) -> list[str] | None:
    """The passwd entry of a user name (or of a numeric uid), if any."""
    for fields in users:
        if len(fields) >= 6 and fields[3].isdigit() and fields[2].isdigit():
            if fields[0] == name or (name.isdigit() and fields[2] == name):
                return fields
    return None


def resolve_user(user: str, passwd: str, group: str) -> ResolvedUser:
    """Resolve USER ("name", "uid", "name:group", "uid:gid", ...) against the
    text of the image's /etc/passwd and /etc/group (either may be empty).

    As Docker: a numeric uid need not exist in /etc/passwd (then gid 0 and
    home /); a name must; the supplementary groups are those of /etc/group
    that list the user by name.
    """
    user_part, _, group_part = (user or "0").partition(":")
    users = _entries(passwd)
    groups = _entries(group)
    uid: int | None = None
    gid = 0
    home = "/"
    name = ""
    fields = _find_user(user_part, users)
    if fields is not None:
        name, uid, gid, home = fields[0], int(fields[2]), int(fields[3]), fields[5] or "/"
    if uid is None:
        if not user_part.isdigit():
            raise InvalidArgumentError(f"unable to find user {user_part}: no matching entries in passwd file")
        uid = int(user_part)
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            gid = _find_group(group_part, groups)
    supplementary: list[int] = []
    if name and not group_part:
        for fields in groups:
            if len(fields) >= 4 and name in fields[3].split(",") and fields[2].isdigit():
                g = int(fields[2])
                if g != gid and g not in supplementary:
                    supplementary.append(g)
    return ResolvedUser(uid, gid, supplementary, home)


def resolve_groups(names: list[str], group: str) -> list[int]:
    """--group-add: GIDs as given, names looked up in the image's
    /etc/group (its text), as Docker does; an unknown name is refused."""
    groups = _entries(group)
    return [int(name) if name.isdigit() else _find_group(name, groups) for name in names]


def resolve_owner(owner: str, passwd: str, group: str) -> tuple[int, int]:
    """Resolve COPY/ADD --chown ("name", "uid", "name:group", ":group", ...)
    to (uid, gid) against the text of the image's /etc/passwd and /etc/group.

    As BuildKit, which differs from USER: a numeric uid alone gives the same
    number as gid; a name alone gives the user's primary group; an empty
    user part is root. Names must exist; numbers need not.
    """
    check_owner_syntax(owner)
    user_part, _, group_part = owner.partition(":")
    uid = gid = 0
    if user_part.isdigit():
        uid = gid = int(user_part)
    elif user_part:
        fields = _find_user(user_part, _entries(passwd))
        if fields is None:
            raise InvalidArgumentError(f"unable to find user {user_part}: no matching entries in passwd file")
        uid, gid = int(fields[2]), int(fields[3])
    if group_part:
        gid = int(group_part) if group_part.isdigit() else _find_group(group_part, _entries(group))
    return uid, gid


def check_owner_syntax(owner: str) -> None:
    """Reject a --chown that can never resolve, before anything is copied."""
    user_part, sep, group_part = owner.partition(":")
    bad_form = not (user_part or group_part) or (sep and not group_part) or ":" in group_part
    if bad_form or any(c in owner for c in " \t\n"):
        raise InvalidArgumentError(f'invalid --chown "{owner}": use USER[:GROUP] (names or numeric ids)')


def account_files() -> tuple[str, str]:
    """The text of /etc/passwd and /etc/group in this process's root, ""
    for a missing or unreadable one: the image's, once inside it."""

    def read(path: str) -> str:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    return read("/etc/passwd"), read("/etc/group")


def check_user_syntax(user: str) -> None:
    """Reject what can never resolve, before the container is created."""
    user_part, sep, group_part = user.partition(":")
    if not user_part or (sep and not group_part) or any(c in user for c in " \t\n"):
        raise InvalidArgumentError(f'invalid user "{user}": use NAME|UID[:GROUP|GID]')
