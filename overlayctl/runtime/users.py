"""USER as Docker resolves it: names and ids from the image's own
/etc/passwd and /etc/group, with the user's supplementary groups."""

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
    for fields in users:
        if len(fields) < 6:
            continue
        if fields[0] == user_part or (user_part.isdigit() and fields[2] == user_part):
            name, uid, gid, home = fields[0], int(fields[2]), int(fields[3]), fields[5] or "/"
            break
    if uid is None:
        if not user_part.isdigit():
            raise InvalidArgumentError(f'unable to find user {user_part}: no matching entries in passwd file')
        uid = int(user_part)
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            match = [f for f in groups if len(f) >= 3 and f[0] == group_part]
            if not match:
                raise InvalidArgumentError(f'unable to find group {group_part}: no matching entries in group file')
            gid = int(match[0][2])
    supplementary: list[int] = []
    if name and not group_part:
        for fields in groups:
            if len(fields) >= 4 and name in fields[3].split(",") and fields[2].isdigit():
                g = int(fields[2])
                if g != gid and g not in supplementary:
                    supplementary.append(g)
    return ResolvedUser(uid, gid, supplementary, home)


def check_user_syntax(user: str) -> None:
    """Reject what can never resolve, before the container is created."""
    user_part, sep, group_part = user.partition(":")
    if not user_part or (sep and not group_part) or any(c in user for c in " \t\n"):
        raise InvalidArgumentError(f'invalid user "{user}": use NAME|UID[:GROUP|GID]')
