"""What an SSH target's sshd needs so that only certificates minted for that target open it.

A certificate's principals are ``LOGIN@TARGET`` (``domain/sshnames``). With
``AuthorizedPrincipalsFile DIR/principals/%u``, sshd accepts a certificate for user ``deploy``
only if one of its principals is a line of ``DIR/principals/deploy``; that file on host ``web-1``
holds ``deploy@web-1`` and nothing else, so a certificate minted for ``stage-1`` is refused there
even though it is signed by the same CA for the same login. A login with no file gets no
certificate login at all. ``jitgate target sshd-config TARGET`` prints this for one target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from jitgate.domain import sshnames
from jitgate.errors import InvalidInput, NotFound
from jitgate.policy.model import Policy

DEFAULT_DIRECTORY = PurePosixPath("/etc/ssh/jitgate")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")


@dataclass(frozen=True, slots=True)
class SshdSetup:
    """The sshd_config lines and the principals files (path to content) for one target."""

    target: str
    config_lines: tuple[str, ...]
    principals: dict[str, tuple[str, ...]]
    files: dict[str, str]


def target_logins(policy: Policy, target: str) -> tuple[str, ...]:
    """Every login any role grants on ``target``, in policy order."""
    found = policy.target(target)
    if found is None:
        raise NotFound(f"no target named {target!r}")
    if found.kind != "ssh":
        raise InvalidInput(f"target {target} is of kind {found.kind}, not ssh")
    logins: dict[str, None] = {}
    for role in policy.roles:
        if role.ssh is not None and role.targets.selects(found):
            logins.update(dict.fromkeys(role.ssh.logins))
    return tuple(logins)


def sshd_setup(policy: Policy, target: str, directory: str = str(DEFAULT_DIRECTORY)) -> SshdSetup:
    """sshd_config lines and principals files for ``target``, with jitgate's files in ``directory``.

    ``directory`` must be an absolute path of plain characters: it is written into sshd_config,
    where spaces, quotes and ``%`` mean something.
    """
    if not _SAFE_PATH.fullmatch(directory) or "/../" in f"{directory}/":
        raise InvalidInput(
            f"{directory[:80]!r} is not an absolute path of plain characters (A-Z a-z 0-9 _ . / + -)"
        )
    base = PurePosixPath(directory)
    principals_dir = base / "principals"
    logins = target_logins(policy, target)
    principals: dict[str, tuple[str, ...]] = {login: (sshnames.principal(login, target),) for login in logins}
    config = (
        f"TrustedUserCAKeys {base / 'user_ca.pub'}",
        f"AuthorizedPrincipalsFile {principals_dir}/%u",
        "AuthorizedKeysFile none",
        f"RevokedKeys {base / 'revoked.krl'}",
    )
    files = {
        str(principals_dir / login): "".join(f"{p}\n" for p in lines) for login, lines in principals.items()
    }
    return SshdSetup(target=target, config_lines=config, principals=principals, files=files)
