"""Certificate minting benchmark: our signer against the limit and the alternatives, in one run.

    .venv/bin/python bench/cert_mint.py                 # 20 interleaved rounds of 0.2 s per method
    .venv/bin/python bench/cert_mint.py --seconds 0.5 --rounds 10 --keygen-runs 200

Every method mints the same user certificate (Ed25519 CA, Ed25519 user key, one principal, a key
id naming user/grant/request, five minutes of validity, ``permit-pty`` only, a fresh serial):

- raw: cryptography's Ed25519 signature over a message the size of our to-be-signed body — the
  ceiling for anything that signs with that library;
- jitgate: ``CertSpec`` (validated) + ``sign_certificate`` per certificate;
- asyncssh: ``SSHKey.generate_user_certificate``;
- cryptography: ``SSHCertificateBuilder(...).sign``;
- ssh-keygen: ``ssh-keygen -s`` as one process per certificate (OpenSSH's own CA).

The machine is shared: rounds are short and interleaved, and the best round of each method is
reported, so that a burst of load from elsewhere does not decide the comparison. ssh-keygen is
timed per process and reported as 1 / median time. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    SSHCertificateBuilder,
    SSHCertificateType,
    load_ssh_public_key,
)

from jitgate.providers.ssh.certs import CaSigner, CertSpec, CertType, sign_certificate
from jitgate.providers.ssh.wire import parse_public_key

KEY_ID = "jitgate:user=alice:grant=g0123456789:request=r0123456789:target=web-1:role=prod-shell"
PRINCIPALS = ("deploy",)
TTL = timedelta(minutes=5)


def rate(step: Callable[[int], object], seconds: float) -> float:
    """Calls per second of ``step(i)``, timed in batches until ``seconds`` have passed."""
    done, batch = 0, 64
    start = time.perf_counter()
    while True:
        for i in range(done, done + batch):
            step(i + 1)
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed
        batch = min(batch * 2, 4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="time per method per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keygen-runs", type=int, default=200, help="ssh-keygen processes per round")
    args = parser.parse_args()

    ca_private = ed25519.Ed25519PrivateKey.generate()
    user_private = ed25519.Ed25519PrivateKey.generate()
    user_line = user_private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    now = datetime.now(UTC)
    after, before = now - timedelta(seconds=30), now + TTL

    # jitgate
    signer = CaSigner(ca_private)
    user_key = parse_public_key(user_line)

    def ours(serial: int) -> bytes:
        spec = CertSpec(
            cert_type=CertType.USER,
            key_id=KEY_ID,
            serial=serial,
            principals=PRINCIPALS,
            valid_after=after,
            valid_before=before,
            extensions=("permit-pty",),
        )
        return sign_certificate(signer, user_key, spec)

    sample = ours(1)
    tbs = sample[: -(4 + 4 + 11 + 4 + 64)]  # the signed body: the cert without its signature field
    message = b"\x5a" * len(tbs)

    def raw(_: int) -> bytes:
        return ca_private.sign(message)

    # asyncssh
    ca_pem = ca_private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    a_ca = asyncssh.import_private_key(ca_pem)
    a_user = asyncssh.import_public_key(user_line)
    a_after, a_before = int(after.timestamp()), int(before.timestamp())

    def with_asyncssh(serial: int) -> object:
        return a_ca.generate_user_certificate(
            a_user,
            KEY_ID,
            serial=serial,
            principals=list(PRINCIPALS),
            valid_after=a_after,
            valid_before=a_before,
            permit_x11_forwarding=False,
            permit_agent_forwarding=False,
            permit_port_forwarding=False,
            permit_pty=True,
            permit_user_rc=False,
        )

    # cryptography
    c_user = load_ssh_public_key(user_line.encode())
    if not isinstance(c_user, ed25519.Ed25519PublicKey):
        raise SystemExit("unexpected key type")

    def with_cryptography(serial: int) -> object:
        return (
            SSHCertificateBuilder()
            .public_key(c_user)
            .serial(serial)
            .type(SSHCertificateType.USER)
            .key_id(KEY_ID.encode())
            .valid_principals([p.encode() for p in PRINCIPALS])
            .valid_after(a_after)
            .valid_before(a_before)
            .add_extension(b"permit-pty", b"")
            .sign(ca_private)
        )

    # ssh-keygen, one process per certificate
    keygen = shutil.which("ssh-keygen")
    tmp = Path(tempfile.mkdtemp(prefix="jitgate-bench-"))
    ca_file, user_file = tmp / "ca", tmp / "user.pub"
    ca_file.write_bytes(ca_pem)
    ca_file.chmod(0o600)
    user_file.write_text(user_line + "\n")

    def with_ssh_keygen(serial: int) -> object:
        assert keygen is not None
        return subprocess.run(
            [keygen, "-q", "-s", str(ca_file), "-I", KEY_ID, "-n", ",".join(PRINCIPALS), "-z", str(serial),
             "-V", "-30s:+5m", "-O", "clear", "-O", "permit-pty", str(user_file)],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def keygen_rate() -> float:
        times = []
        for i in range(args.keygen_runs):
            start = time.perf_counter()
            with_ssh_keygen(i + 1)
            times.append(time.perf_counter() - start)
        return 1 / statistics.median(times)

    in_process: dict[str, Callable[[], float]] = {
        "raw Ed25519 sign (cryptography)": lambda: rate(raw, args.seconds),
        "jitgate CertSpec + sign_certificate": lambda: rate(ours, args.seconds),
        "asyncssh generate_user_certificate": lambda: rate(with_asyncssh, args.seconds),
        "cryptography SSHCertificateBuilder": lambda: rate(with_cryptography, args.seconds),
    }
    best = dict.fromkeys(in_process, 0.0)
    for _ in range(args.rounds):
        for name, measure in in_process.items():
            best[name] = max(best[name], measure())
    if keygen is not None:
        best["ssh-keygen -s (one process per cert)"] = keygen_rate()
    shutil.rmtree(tmp)

    limit = best["raw Ed25519 sign (cryptography)"]
    width = max(map(len, best))
    print(f"signed body: {len(tbs)} bytes; best of {args.rounds} rounds of {args.seconds:g} s per method;")
    print(f"ssh-keygen: 1 / median of {args.keygen_runs} runs")
    print(f"{'method':<{width}}  {'certs/s':>10}  {'% of raw':>8}")
    for name, value in best.items():
        print(f"{name:<{width}}  {value:>10,.0f}  {100 * value / limit:>7.1f}%")


if __name__ == "__main__":
    main()
