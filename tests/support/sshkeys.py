"""Public key lines made by the real ``ssh-keygen``: what people will paste into ``jitgate keys add``.

DSA comes from ``cryptography`` when the local ``ssh-keygen`` no longer makes DSA keys.
"""

from __future__ import annotations

import base64
import struct
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import dsa


def keygen(directory: Path, name: str, *args: str, comment: str = "") -> Path:
    """A key pair ``directory/name`` (and ``.pub``) from ``ssh-keygen ARGS``; returns the private file."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-C", comment, "-f", str(private), *args],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return private


def public_line(directory: Path, name: str, *args: str, comment: str = "") -> str:
    private = keygen(directory, name, *args, comment=comment)
    return private.with_name(f"{name}.pub").read_text().strip()


def blob_of(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    return _field(value.to_bytes(value.bit_length() // 8 + 1, "big"))


def dsa_line(directory: Path) -> str:
    """An ``ssh-dss`` public key line, from ``ssh-keygen`` if it still makes them."""
    try:
        return public_line(directory, "dsa", "-t", "dsa")
    except subprocess.CalledProcessError:
        numbers = dsa.generate_private_key(1024)  # noqa: S505 - a weak key, to be refused.public_key().public_numbers()
        p, q, g = numbers.parameter_numbers.p, numbers.parameter_numbers.q, numbers.parameter_numbers.g
        blob = _field(b"ssh-dss") + _mpint(p) + _mpint(q) + _mpint(g) + _mpint(numbers.y)
        return f"ssh-dss {base64.b64encode(blob).decode()} dsa"


def certificate_line(directory: Path) -> str:
    """A user certificate (``…-cert-v01@openssh.com``) signed by a throwaway CA."""
    ca = keygen(directory, "throwaway-ca", "-t", "ed25519")
    user = keygen(directory, "certified", "-t", "ed25519")
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "test", "-n", "alice", str(user) + ".pub"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    return user.with_name("certified-cert.pub").read_text().strip()
