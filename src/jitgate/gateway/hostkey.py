"""The gateway's host identity: one Ed25519 key made once, certified by jitgate's host CA.

The key lives in ``DATA_DIR/gateway/host_ed25519`` (0600), made under a file lock so that several
broker processes sharing the directory end up with the same key. Its certificate is signed again
by each gateway process when it starts and whenever half of its validity has passed, so clients
that trust the host CA (``@cert-authority`` in their known_hosts) never see an unknown-host
prompt, and a rotated host CA reaches the gateway without a restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncssh

from jitgate import filelock
from jitgate.errors import ProviderError
from jitgate.providers.ssh.provider import SshCertificateProvider

CERT_VALIDITY = timedelta(days=7)
KEY_FILE = "host_ed25519"


@dataclass(frozen=True, slots=True)
class HostIdentity:
    key: asyncssh.SSHKey
    certificate: asyncssh.SSHCertificate
    valid_before: datetime

    def due(self, now: datetime) -> bool:
        """Past half of the certificate's validity: time to sign a fresh one."""
        return now >= self.valid_before - CERT_VALIDITY / 2


def load_or_create_key(directory: Path) -> asyncssh.SSHKey:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / KEY_FILE
    with filelock.exclusive(directory / ".lock"):
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment="jitgate-gateway")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(key.export_private_key())
    if path.stat().st_mode & 0o077:
        raise ProviderError(f"{path} is readable by others; chmod 600 it")
    try:
        return asyncssh.read_private_key(str(path))
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        raise ProviderError(f"the gateway host key {path} cannot be read: {exc}") from None


def certify(
    key: asyncssh.SSHKey, provider: SshCertificateProvider, names: list[str], now: datetime
) -> HostIdentity:
    """A host certificate for ``key`` naming ``names``, from the broker's host CA."""
    public_line = key.export_public_key().decode().strip()
    issued = provider.host_certificate(public_line, names, CERT_VALIDITY, now)
    certificate = asyncssh.import_certificate(issued.secret["certificate"])
    return HostIdentity(key=key, certificate=certificate, valid_before=issued.valid_before)
