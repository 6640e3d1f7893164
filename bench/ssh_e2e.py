"""End-to-end latency of ``jitgate ssh TARGET -- true`` against plain ``ssh`` to the same sshd.

    .venv/bin/python bench/ssh_e2e.py              # 20 runs of each, interleaved (needs root)
    .venv/bin/python bench/ssh_e2e.py --runs 50

One real ``jitgate server`` and one real loopback ``sshd`` (trusting the broker's user CA, showing a
host certificate from its host CA). Plain ``ssh`` uses a key and a certificate minted once, with
exactly the options ``jitgate ssh`` passes (strict host checking against the ``@cert-authority``
line), so the difference is what jitgate adds: starting Python and the CLI, making a key
(ssh-keygen, while the HTTP client loads), one HTTPS-less round trip to mint a certificate,
writing and removing the private directory. The two
are run alternately so that load from elsewhere on the machine hits both alike. Also printed: the
parts of that difference, measured on their own.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from common import JITGATE, free_port, percentiles, wait_healthy
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# The test suite's throwaway sshd (and the helpers it uses), not a copy of it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from sshd import empty_krl, ensure_login_users, start_sshd

from jitgate.providers.ssh.ca import CaKind, CaStore
from jitgate.providers.ssh.provider import SshCertificateProvider

POLICY = """
targets:
  - {{name: web-1, kind: ssh, address: 127.0.0.1, port: {port}}}
roles:
  - name: shell
    targets: {{names: [web-1]}}
    ssh: {{logins: [deploy], cert_ttl: 30m}}
    max_duration: 1h
    requesters: [group:engineers]
    approval: auto
"""

# What ``jitgate ssh`` loads before it runs ssh: its entry point, the session module, the HTTP client.
SESSION_IMPORTS = "import jitgate.cli.entry, jitgate.cli.sshsession, http.client"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def line(label: str, samples: list[float]) -> str:
    p50, p99 = percentiles(samples)
    return f"  {label:<44} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ensure_login_users(("deploy",))

    with tempfile.TemporaryDirectory(prefix="jitgate-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        added = subprocess.run(
            [*JITGATE, "users", "add", "alice", "--group=engineers", "--data-dir", str(data), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        token = json.loads(added.stdout)["token"]

        # The broker's own CA store, used before the broker runs: trust for sshd, a host certificate.
        now = datetime.now(UTC)
        store = CaStore(data / "ca")
        host_key = tmp / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        host_cert = SshCertificateProvider(store).host_certificate(
            host_key.with_suffix(".pub").read_text(), ["127.0.0.1"], timedelta(hours=2), now
        )
        sshd = start_sshd(
            tmp / "sshd",
            trusted_ca_lines=store.public_lines(CaKind.USER, now),
            revoked_keys=empty_krl(tmp),
            host_certificate=host_cert.secret["certificate"],
            host_key=host_key,
        )
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY.format(port=sshd.port))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [*JITGATE, "server", "--data-dir", str(data), "--policy", str(policy),
             "--listen", f"127.0.0.1:{port}", "--no-access-log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_healthy(url)
            headers = {"Authorization": f"Bearer {token}"}
            granted = httpx.post(f"{url}/api/v1/requests", json={"role": "shell"}, headers=headers)
            if granted.json().get("state") != "ACTIVE":
                raise SystemExit(f"no grant: {granted.text}")
            run_dir = tmp / "run"
            run_dir.mkdir(mode=0o700)
            env = {**os.environ, "JITGATE_URL": url, "JITGATE_TOKEN": token, "XDG_RUNTIME_DIR": str(run_dir)}

            # The static side: one key and one certificate, minted once, the same ssh options.
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
            plain = [
                "ssh", "-i", str(key), "-o", f"CertificateFile={cert}", "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none", "-o", f"UserKnownHostsFile={known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                "-p", str(sshd.port), "--", "deploy@127.0.0.1", "true",
            ]  # fmt: skip
            jitgate = [*JITGATE, "ssh", "web-1", "--", "true"]
            startup = [sys.executable, "-c", "pass"]
            cli_help = [*JITGATE, "--help"]
            session_imports = [sys.executable, "-c", SESSION_IMPORTS]
            keygen_file = run_dir / "bench-key"
            keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keygen_file)]

            public = ed25519.Ed25519PrivateKey.generate().public_key()
            body = {
                "target": "web-1",
                "public_key": public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode(),
            }

            samples: dict[str, list[float]] = {
                "plain": [],
                "jitgate": [],
                "python": [],
                "imports": [],
                "keygen": [],
                "cli": [],
                "mint": [],
            }
            for argv in (plain, jitgate):  # warm caches once
                timed(argv, env)
            with httpx.Client(base_url=url, headers=headers) as client:
                for _ in range(args.runs):
                    samples["plain"].append(timed(plain, env))
                    samples["jitgate"].append(timed(jitgate, env))
                    samples["python"].append(timed(startup, env))
                    samples["imports"].append(timed(session_imports, env))
                    for stale in (keygen_file, keygen_file.with_suffix(".pub")):
                        stale.unlink(missing_ok=True)
                    samples["keygen"].append(timed(keygen, env))
                    samples["cli"].append(timed(cli_help, env))
                    start = time.perf_counter()
                    client.post("/api/v1/ssh/certificates", json=body).raise_for_status()
                    samples["mint"].append(time.perf_counter() - start)
            left = list(run_dir.joinpath("jitgate").iterdir())
            for stale in (keygen_file, keygen_file.with_suffix(".pub")):
                stale.unlink(missing_ok=True)
        finally:
            server.terminate()
            server.wait(timeout=20)
            sshd.stop()

    p50_plain, p99_plain = percentiles(samples["plain"])
    p50_jit, p99_jit = percentiles(samples["jitgate"])
    print(f"ssh -- true to a loopback sshd, {args.runs} runs each, alternating, {os.cpu_count()} cores")
    print(line("plain ssh, static key + certificate", samples["plain"]))
    print(line("jitgate ssh web-1 -- true", samples["jitgate"]))
    print(f"  {'added by jitgate (p50 / p99)':<44} {(p50_jit - p50_plain) * 1000:7.1f} ms   "
          f"    {(p99_jit - p99_plain) * 1000:7.1f} ms")  # fmt: skip
    print("  parts of it, measured alone:")
    print(line("  python -c pass (interpreter start)", samples["python"]))
    print(line("  python + jitgate ssh's own imports", samples["imports"]))
    print(line("  ssh-keygen -t ed25519 (runs while they load)", samples["keygen"]))
    print(line("  jitgate --help (start + CLI imports)", samples["cli"]))
    print(line("  POST /api/v1/ssh/certificates (warm)", samples["mint"]))
    print(f"  files left in the runtime directory afterwards: {len(left)}")


if __name__ == "__main__":
    main()
