"""How long the command line takes, side by side with the programs it stands in for.

    .venv/bin/python bench/cli.py              # 20 runs of each, interleaved (needs root for sshd)
    .venv/bin/python bench/cli.py --runs 50
    .venv/bin/python bench/cli.py --no-ssh     # client commands only

One real ``jitgate server`` (SQLite, a demo-like policy, one user with a token) and one real
loopback ``sshd`` trusting the broker's user CA and showing a host certificate from its host CA.

Client commands: ``curl`` asking the API for the roles is the peer, ``python -c pass`` the floor
every Python program pays; ``jitgate roles`` and ``jitgate --version`` are what a person waits for.

ssh: plain ``ssh`` with a key and a certificate minted once, with exactly the options ``jitgate
ssh`` passes, against ``jitgate ssh web-1 -- true`` (a fresh key, a certificate minted now, the
same ssh); the difference is what jitgate adds to a login.

Every program is run alternately with the others, so load from elsewhere on the machine hits all
alike; on a shared machine the minimum is the steadier figure, and the CPU time each program used
(its own and that of the programs it ran, ssh's included) the one load stretches least. Figures
are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import httpx
from common import JITGATE, free_port, wait_healthy

# What people type: the installed ``jitgate`` program (``python -m jitgate`` when there is none).
_SCRIPT = Path(sys.executable).with_name("jitgate")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else JITGATE

POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1, port: {port}}}
  - {{name: web-2, kind: ssh, address: 127.0.0.1, port: {port}}}
roles:
  - name: shell
    targets: {{names: [web-1]}}
    ssh: {{logins: [deploy], cert_ttl: 30m}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
  - name: web-admin
    targets: {{names: [web-1, web-2]}}
    ssh: {{logins: [deploy]}}
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:leads]
  - name: break-glass
    targets: {{names: [web-1, web-2]}}
    ssh: {{logins: [deploy]}}
    max_duration: 1h
    requesters: [group:oncall]
    approvers: [group:leads]
    break_glass: true
"""


class Sample(NamedTuple):
    wall: float  # seconds from start to exit
    cpu: float  # seconds of CPU the program and every program it ran used: what load does not stretch


def cpu_of_children() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> Sample:
    cpu = cpu_of_children()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return Sample(elapsed, cpu_of_children() - cpu)


def figures(samples: list[float]) -> tuple[float, float, float]:
    """(min, p50, p95) in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return ordered[0] * 1000, statistics.median(ordered) * 1000, p95 * 1000


def print_table(rows: dict[str, list[Sample]]) -> None:
    print(f"  {'':<42} {'wall min':>9} {'p50':>7} {'p95':>7}   {'cpu min':>8} {'p50':>7}   (ms)")
    for label, samples in rows.items():
        low, mid, high = figures([s.wall for s in samples])
        cpu_low, cpu_mid, _ = figures([s.cpu for s in samples])
        print(f"  {label:<42} {low:9.1f} {mid:7.1f} {high:7.1f}   {cpu_low:8.1f} {cpu_mid:7.1f}")


@contextmanager
def loopback_sshd(tmp: Path, data: Path) -> Iterator[int]:
    """A throwaway sshd trusting the broker's user CA (as ``jitgate ca show`` prints it); its port."""
    # The test suite's throwaway sshd, not a copy of it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
    from sshd import empty_krl, ensure_login_users, start_sshd

    from jitgate.providers.ssh.ca import CaStore
    from jitgate.providers.ssh.provider import SshCertificateProvider

    ensure_login_users(("deploy",))
    shown = subprocess.run(
        [*JITGATE, "ca", "show", "--data-dir", str(data)], capture_output=True, text=True, check=True
    )
    user_ca = [line for line in shown.stdout.splitlines() if line.startswith("ssh-")]
    host_key = tmp / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    host_cert = SshCertificateProvider(CaStore(data / "ca")).host_certificate(
        host_key.with_suffix(".pub").read_text(), ["127.0.0.1"], timedelta(hours=2), datetime.now(UTC)
    )
    sshd = start_sshd(
        tmp / "sshd",
        trusted_ca_lines=user_ca[:1],
        revoked_keys=empty_krl(tmp),
        host_certificate=host_cert.secret["certificate"],
        host_key=host_key,
    )
    try:
        yield sshd.port
    finally:
        sshd.stop()


@contextmanager
def running_broker(data: Path, policy: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*JITGATE, "server", "--data-dir", str(data), "--policy", str(policy),
         "--listen", f"127.0.0.1:{port}", "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_healthy(url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def plain_ssh(tmp: Path, url: str, headers: dict[str, str], port: int) -> list[str]:
    """``ssh … true`` with a key and certificate minted once, and the options ``jitgate ssh`` passes."""
    key = tmp / "static"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    minted = httpx.post(
        f"{url}/api/v1/ssh/certificates",
        json={"target": "web-1", "public_key": key.with_suffix(".pub").read_text().strip()},
        headers=headers,
    ).json()
    cert = tmp / "static-cert.pub"
    cert.write_text(minted["certificate"] + "\n")
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text("".join(f"{x}\n" for x in minted["known_hosts"]))
    return [
        "ssh", "-i", str(key), "-o", f"CertificateFile={cert}", "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
        "-p", str(port), "--", "deploy@127.0.0.1", "true",
    ]  # fmt: skip


def measure(runs: int, commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {label: [] for label in commands}
    for argv in commands.values():  # warm the caches once
        timed(argv, env)
    for _ in range(runs):
        for label, argv in commands.items():
            samples[label].append(timed(argv, env))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-ssh", action="store_true", help="client commands only (no sshd)")
    args = parser.parse_args()

    # ``jitgate ssh`` keeps its key in $XDG_RUNTIME_DIR, a tmpfs on a desktop; /dev/shm is one too.
    shm = Path("/dev/shm")
    with (
        tempfile.TemporaryDirectory(prefix="jitgate-bench-cli-") as tmp_name,
        tempfile.TemporaryDirectory(
            prefix="jitgate-bench-run-", dir=shm if shm.is_dir() else None
        ) as run_name,
    ):
        tmp, run_dir = Path(tmp_name), Path(run_name)
        data = tmp / "data"
        added = subprocess.run(
            [*JITGATE, "users", "add", "alice", "--group=engineers", "--data-dir", str(data), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        token = json.loads(added.stdout)["token"]
        subprocess.run([*JITGATE, "init", "--data-dir", str(data)], capture_output=True, check=True)
        env = {
            **os.environ,
            "JITGATE_TOKEN": token,
            "XDG_RUNTIME_DIR": str(run_dir),
            "XDG_CONFIG_HOME": str(tmp / "config"),
        }
        with contextmanager_or_none(not args.no_ssh, tmp, data) as sshd_port:
            policy = tmp / "policy.yaml"
            policy.write_text(POLICY.format(port=sshd_port or 22))
            with running_broker(data, policy) as url:
                env["JITGATE_URL"] = url
                client_commands(args.runs, url, token, env)
                if sshd_port is not None:
                    ssh_login(args.runs, tmp, url, token, port=sshd_port, env=env)
        if sshd_port is not None:
            print(f"  files left in the runtime directory: {len(list((run_dir / 'jitgate').iterdir()))}")


def client_commands(runs: int, url: str, token: str, env: dict[str, str]) -> None:
    curl = ["curl", "-sf", "-H", f"Authorization: Bearer {token}", f"{url}/api/v1/roles"]
    samples = measure(
        runs,
        {
            "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
            "curl GET /api/v1/roles (the peer)": curl,
            "jitgate roles": [*CLI, "roles"],
            "jitgate roles --json": [*CLI, "roles", "--json"],
            "jitgate --version": [*CLI, "--version"],
            "jitgate --help": [*CLI, "--help"],
            "jitgate roles --help": [*CLI, "roles", "--help"],
        },
        env,
    )
    print(f"client commands, {runs} runs each, alternating, {os.cpu_count()} cores")
    print_table(samples)


def ssh_login(runs: int, tmp: Path, url: str, token: str, *, port: int, env: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    granted = httpx.post(f"{url}/api/v1/requests", json={"role": "shell"}, headers=headers)
    if granted.json().get("state") != "ACTIVE":
        raise SystemExit(f"no grant: {granted.text}")
    samples = measure(
        runs,
        {
            "plain ssh, static key + certificate": plain_ssh(tmp, url, headers, port),
            "jitgate ssh web-1 -- true": [*CLI, "ssh", "web-1", "--", "true"],
        },
        env,
    )
    print(f"\nssh -- true to a loopback sshd, {runs} runs each, alternating")
    print_table(samples)
    plain, jitgate = ([s.wall for s in runs] for runs in samples.values())
    (plain_min, plain_p50, _), (jit_min, jit_p50, _) = figures(plain), figures(jitgate)
    plain_cpu, jit_cpu = ([s.cpu for s in runs] for runs in samples.values())
    cpu_added = figures(jit_cpu)[0] - figures(plain_cpu)[0], figures(jit_cpu)[1] - figures(plain_cpu)[1]
    print(
        f"  {'added by jitgate ssh':<42} {jit_min - plain_min:9.1f} {jit_p50 - plain_p50:7.1f} {'':7}"
        f"   {cpu_added[0]:8.1f} {cpu_added[1]:7.1f}"
    )


@contextmanager
def contextmanager_or_none(wanted: bool, tmp: Path, data: Path) -> Iterator[int | None]:
    if not wanted:
        yield None
        return
    with loopback_sshd(tmp, data) as port:
        yield port


if __name__ == "__main__":
    main()
