"""What the SSH gateway costs against plain ``ssh`` to the same sshd, measured in the same run.

    .venv/bin/python bench/gateway.py                      # the defaults (needs root, for sshd)
    .venv/bin/python bench/gateway.py --runs 10 --gib 0.25 --sessions 50

The world is the one the end-to-end tests use (``tests/integration/gatewayworld.py``): a real
``jitgate server`` with the gateway in each worker, real loopback sshds with host certificates from
the broker's host CA, registered keys, ``@cert-authority`` trust. The direct peer uses a key and a
certificate minted once through ``POST /api/v1/ssh/certificates`` and the same ssh options (strict
host checking), so the difference is what the gateway adds. Ciphers are OpenSSH's and asyncssh's
defaults; what was negotiated is printed once.

1. ``ssh … true``: connect, authenticate, run, close; gateway and direct alternate.
2. Throughput of an exec channel (``head -c N /dev/zero`` to the client's /dev/null, and
   ``cat > /dev/null`` fed a file from the client) and of scp (SFTP protocol, a file on tmpfs),
   both directions, gateway and direct alternating; with the gateway workers' CPU meanwhile.
3. ``--sessions`` concurrent interactive shells (``ssh -tt``, stdin a pipe), each typing one loop
   that prints 200 lines: the gateway workers' memory and CPU per session (from /proc), next to
   sshd's own processes for the same sessions made directly.
4. Recording has no off switch, so its cost is measured as: exec throughput with
   ``JITGATE_GATEWAY_EXEC_RECORD_BYTES`` 0 (counted, nothing stored), the default (1 MiB), and
   larger than the transfer (everything stored), each a separate broker start; and the shell
   recorder alone, fed in-process the byte stream one session of 3 relayed.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from common import percentiles

# The test suite's gateway world (and the helpers it uses), not a copy of it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from gatewayworld import GatewayWorld, new_key, start_world
from sshd import LOGINS, SshdFactory, ensure_login_users

from jitgate.gateway.recording import SessionRecordings
from support.broker import Server

MIB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
LOOP = b"for i in $(seq 200); do echo line $i; sleep 0.01; done; echo DO''NE\n"


class TmpFactory:
    """What ``SshdFactory`` needs of pytest's ``tmp_path_factory``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


class Bench:
    def __init__(self, world: GatewayWorld, workers: int) -> None:
        self.world = world
        self.workers = workers
        self.sshd = world.targets["web-1"]
        world.grant("alice", "shell")
        key = new_key(world.tmp, "direct")
        minted = world.http(
            "POST",
            "/api/v1/ssh/certificates",
            "alice",
            json={"target": "web-1", "public_key": key.with_suffix(".pub").read_text().strip()},
        )
        minted.raise_for_status()
        self.direct_key = key
        self.direct_cert = cert = world.tmp / "direct-cert.pub"
        cert.write_text(minted.json()["certificate"] + "\n")
        known = world.tmp / "direct_known_hosts"
        known.write_text("".join(f"{line}\n" for line in minted.json()["known_hosts"]))
        self.direct_options = [
            f"UserKnownHostsFile={known}" if o == f"UserKnownHostsFile={world.known_hosts}" else o
            for o in world.ssh_options("alice", key)
        ] + ["-o", f"CertificateFile={cert}"]

    def options(self, how: str) -> list[str]:
        if how == "direct-kex":  # the key exchange the gateway's own legs negotiate (see the top lines)
            return [*self.direct_options, "-o", "KexAlgorithms=curve25519-sha256"]
        return self.world.ssh_options("alice") if how == "gateway" else self.direct_options

    def port(self, how: str) -> int:
        return self.world.gateway_port if how == "gateway" else self.sshd.port

    def host(self, how: str) -> str:
        return "deploy@web-1@127.0.0.1" if how == "gateway" else "deploy@127.0.0.1"

    def ssh(self, how: str, command: Sequence[str] = (), extra: Sequence[str] = ()) -> list[str]:
        return ["ssh", *self.options(how), "-p", str(self.port(how)), *extra, self.host(how), *command]

    def scp(self, how: str, source: str, dest: str) -> list[str]:
        return ["scp", *self.options(how), "-P", str(self.port(how)), source, dest]

    def restart(self, env: dict[str, str]) -> None:
        """A fresh broker on the same data, gateway port and targets."""
        world = self.world
        world.server.stop()
        world.server = Server.start(
            world.data,
            world.tmp / "policy.yaml",
            world.tmp / "server.log",
            {
                "JITGATE_GATEWAY_LISTEN": f"127.0.0.1:{world.gateway_port}",
                "JITGATE_WORKERS": str(self.workers),
                **env,
            },
        )
        timed(self.ssh("gateway", ["true"]))  # the first session loads what sessions use


def timed(argv: list[str], stdin: IO[bytes] | int = subprocess.DEVNULL) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[-3:])} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return elapsed


def alternate(
    runs: int, work: Callable[[str], float], hows: Sequence[str] = ("gateway", "direct")
) -> dict[str, list[float]]:
    """``work`` for each of ``hows``, turn by turn, which goes first rotating."""
    samples: dict[str, list[float]] = {how: [] for how in hows}
    for i in range(runs):
        for how in [*hows[i % len(hows) :], *hows[: i % len(hows)]]:
            samples[how].append(work(how))
    return samples


# -- /proc ----------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, float]:
    """(comm, ppid, CPU seconds) of ``pid``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
    return comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICKS


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = _stat(int(entry.name))[1]
            except (OSError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def gateway_pids(world: GatewayWorld) -> list[int]:
    """The worker processes (with one worker, the server process itself)."""
    root = world.server.process.pid
    return descendants(root) or [root]


def sshd_pids(bench: Bench) -> list[int]:
    """sshd's per-connection processes (not the login's shell and commands)."""
    return [p for p in descendants(bench.sshd.process.pid) if _alive_comm(p) == "sshd"]


def _alive_comm(pid: int) -> str:
    try:
        return _stat(pid)[0]
    except OSError:
        return ""


def memory(pids: Sequence[int]) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over ``pids``."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += _stat(pid)[2]
        except OSError:
            continue
    return total


# -- 1 and 2 --------------------------------------------------------------------------------------


def ms(label: str, p50: float, p99: float) -> str:
    return f"  {label:<44} p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms"


def latency(bench: Bench, runs: int) -> list[str]:
    hows = ("gateway", "direct", "direct-kex")
    samples = alternate(runs, lambda how: timed(bench.ssh(how, ["true"])), hows)
    (g50, g99), (d50, d99) = percentiles(samples["gateway"]), percentiles(samples["direct"])
    k50, k99 = percentiles(samples["direct-kex"])
    return [
        f"1. ssh … true, {runs} runs each, alternating",
        ms("direct ssh (key + minted certificate)", d50, d99),
        ms("through the gateway", g50, g99),
        f"  {'added by the gateway (p50 / p99)':<44}     {(g50 - d50) * 1000:7.1f} ms       "
        f"{(g99 - d99) * 1000:7.1f} ms   (goal < 50 ms at p50)",
        ms("(direct, -o KexAlgorithms=curve25519-sha256)", k50, k99),
        f"  {'(added against that, p50 / p99)':<44}     {(g50 - k50) * 1000:7.1f} ms       "
        f"{(g99 - k99) * 1000:7.1f} ms",
    ]


def exec_down(bench: Bench, size: int) -> Callable[[str], float]:
    return lambda how: timed(bench.ssh(how, [f"head -c {size} /dev/zero"]))


def exec_up(bench: Bench, blob: Path) -> Callable[[str], float]:
    def run(how: str) -> float:
        with blob.open("rb") as source:
            return timed(bench.ssh(how, ["cat > /dev/null"]), stdin=source)

    return run


def scp_up(bench: Bench, blob: Path, remote: Path) -> Callable[[str], float]:
    def run(how: str) -> float:
        took = timed(bench.scp(how, str(blob), f"{bench.host(how)}:{remote / 'up'}"))
        (remote / "up").unlink()
        return took

    return run


def scp_down(bench: Bench, blob: Path, local: Path) -> Callable[[str], float]:
    def run(how: str) -> float:
        took = timed(bench.scp(how, f"{bench.host(how)}:{blob}", str(local)))
        local.unlink()
        return took

    return run


def rates(bench: Bench, label: str, size: int, runs: int, work: Callable[[str], float]) -> str:
    """Best MiB/s each way, and what the gateway workers' CPU did while the gateway carried it."""
    used: list[tuple[float, float]] = []

    def measured(how: str) -> float:
        if how != "gateway":
            return work(how)
        before = cpu(gateway_pids(bench.world))
        took = work(how)
        used.append((cpu(gateway_pids(bench.world)) - before, took))
        return took

    samples = alternate(runs, measured)
    gateway, direct = (size / MIB / min(samples[h]) for h in ("gateway", "direct"))
    seconds, wall = sum(c for c, _ in used), sum(t for _, t in used)
    return (
        f"  {label:<34} direct {direct:6.1f} MiB/s   gateway {gateway:6.1f} MiB/s   "
        f"ratio {gateway / direct * 100:5.1f} %   (workers {seconds / wall * 100:3.0f} % of a core, "
        f"{seconds / (runs * size / (1024 * MIB)):.1f} CPU s/GiB)"
    )


def throughput(bench: Bench, size: int, runs: int, blob: Path, remote: Path) -> list[str]:
    local = blob.parent / "down"
    lines = [f"2. throughput, {size / MIB:.0f} MiB, best of {runs}, alternating (goal >= 50 % of direct)"]
    for label, work in (
        ("exec, target → client (head -c)", exec_down(bench, size)),
        ("exec, client → target (cat >)", exec_up(bench, blob)),
        ("scp (SFTP), client → target", scp_up(bench, blob, remote)),
        ("scp (SFTP), target → client", scp_down(bench, blob, local)),
    ):
        lines.append(rates(bench, label, size, runs, work))
    return lines


# -- 3 --------------------------------------------------------------------------------------------


class Sessions:
    """``n`` interactive shells through ``how``, each one's output in a file."""

    def __init__(self, bench: Bench, how: str, n: int, out: Path) -> None:
        out.mkdir()
        self.files = [out / f"{k}.out" for k in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.typed = b""
        for path in self.files:
            with path.open("wb") as sink:
                self.procs.append(
                    subprocess.Popen(
                        bench.ssh(how, extra=["-tt"]),
                        stdin=subprocess.PIPE,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )
        self.type(b"echo RE''ADY\n")

    def type(self, line: bytes) -> None:
        self.typed += line
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(line)
                    proc.stdin.flush()
                except BrokenPipeError:
                    continue

    def wait_for(self, marker: bytes, timeout: float) -> tuple[int, float]:
        """Until every live session printed ``marker``: (how many did, seconds taken)."""
        start = time.monotonic()
        while True:
            done = sum(marker in path.read_bytes() for path in self.files)
            alive = sum(proc.poll() is None for proc in self.procs)
            if done >= len(self.files) or time.monotonic() - start > timeout or alive == 0:
                return done, time.monotonic() - start
            if done + (len(self.procs) - alive) >= len(self.files):
                return done, time.monotonic() - start
            time.sleep(0.1)  # polling the sessions' output

    def close(self) -> list[str]:
        """Type ``exit``; what did not end cleanly, one line each."""
        self.type(b"exit\n")
        problems = []
        for path, proc in zip(self.files, self.procs, strict=True):
            if proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0:
                tail = path.read_bytes()[-200:].decode(errors="replace").strip().splitlines()
                problems.append(f"{path.name}: exit {code}: {tail[-1] if tail else ''}")
        return problems


def sessions_cost(
    bench: Bench, how: str, n: int, pids: Callable[[], list[int]], out: Path
) -> tuple[list[str], float, bytes, bytes]:
    """(lines, CPU seconds per session, one session's output, what was typed)."""
    before_pids = pids()
    rss0, pss0 = memory(before_pids)
    group = Sessions(bench, how, n, out)
    ready, took = group.wait_for(b"READY", timeout=120)
    time.sleep(1.0)  # let what opening left behind settle before reading memory
    rss1, pss1 = memory(pids())
    idle0, idle_start = cpu(pids()), time.monotonic()
    time.sleep(2.0)  # CPU of the workers with every session open and quiet
    idle_rate = (cpu(pids()) - idle0) / (time.monotonic() - idle_start)
    cpu0, start = cpu(pids()), time.monotonic()
    group.type(LOOP)
    finished, _ = group.wait_for(b"DONE", timeout=120)
    busy = time.monotonic() - start
    used = cpu(pids()) - cpu0
    per = used / max(1, finished)
    net = (used - idle_rate * busy) / max(1, finished)
    problems = group.close()
    label = "gateway workers" if how == "gateway" else "sshd (its own processes)"
    lines = [
        f"  {label}: {ready}/{n} open in {took:.1f} s, "
        f"{finished}/{n} finished the loop in {busy:.1f} s, {len(problems)} ended badly",
        f"    memory: RSS {rss0:.1f} → {rss1:.1f} MiB, {(rss1 - rss0) / max(1, ready) * 1024:.0f} KiB/session"
        f";  PSS {pss0:.1f} → {pss1:.1f} MiB, {(pss1 - pss0) / max(1, ready) * 1024:.0f} KiB/session",
        f"    CPU: {used:.2f} s for the loop → {per * 1000:.1f} ms/session "
        f"({net * 1000:.1f} ms net of {idle_rate * 1000:.0f} ms/s idle with all open)",
    ]
    lines += [f"    {p}" for p in problems[:10]]
    if how == "gateway":
        lines.append(teardown(bench))
    sample = group.files[0].read_bytes() if group.files else b""
    return lines, net, sample, group.typed


def teardown(bench: Bench) -> str:
    """After the last client left: how long until the target has no session processes and no
    session is live on record."""
    start = time.monotonic()
    while True:
        left = len(sshd_pids(bench))
        live = len(bench.world.sessions(active="true", limit="100"))
        waited = time.monotonic() - start
        if (left == 0 and live == 0) or waited > 30:
            return (
                f"    after the last client exited: {left} sshd session processes and {live} live "
                f"sessions on record left after {waited:.1f} s"
            )
        time.sleep(0.1)  # polling the target and the broker


# -- 4 --------------------------------------------------------------------------------------------


def recording_cost(bench: Bench, size: int, runs: int, blob: Path) -> list[str]:
    lines = [
        f"4a. exec throughput by recording cap, {size / MIB:.0f} MiB, best of {runs}, a broker start each"
    ]
    caps = (
        ("cap 0 (counted only)", "0"),
        ("cap 1 MiB (default)", str(MIB)),
        ("cap 2 GiB", str(2 * 1024 * MIB)),
    )
    for label, cap in caps:
        bench.restart({"JITGATE_GATEWAY_EXEC_RECORD_BYTES": cap})
        recordings = bench.world.data / "recordings"
        before = _tree_size(recordings)
        for direction, work in (("↓", exec_down(bench, size)), ("↑", exec_up(bench, blob))):
            lines.append(rates(bench, f"{label} {direction}", size, runs, work))
        lines.append(f"    recordings written: {(_tree_size(recordings) - before) / MIB:.1f} MiB")
        shutil.rmtree(recordings, ignore_errors=True)
    return lines


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def shell_recorder_cost(root: Path, output: bytes, typed: bytes, repeat: int) -> tuple[float, float]:
    """Feed one session's stream, as lines, through the shell recorder ``repeat`` times, each its
    own session: CPU seconds per session for the whole recording (directory, file, header, events,
    flush, close), and for the same with no bytes at all."""
    out_chunks = output.splitlines(keepends=True)
    in_chunks = typed.splitlines(keepends=True)

    def record(ins: list[bytes], outs: list[bytes]) -> float:
        start = time.process_time()
        for _ in range(repeat):
            recordings = SessionRecordings(root, f"s-{secrets.token_hex(8)}")
            recorder = recordings.shell(
                0, width=80, height=24, term="xterm", command=None, timestamp=time.time()
            )
            at = 0.0
            for chunk in ins:
                recorder.input(at, chunk)
            for chunk in outs:
                at += 0.01
                recorder.output(at, chunk)
            recordings.flush()
            recordings.close_all()
        return (time.process_time() - start) / repeat

    return record(in_chunks, out_chunks), record([], [])


def exec_recorder_cost(root: Path, size: int, fill: bytes) -> tuple[float, float, int]:
    """``size`` bytes of ``fill`` as stdout, in 32 KiB chunks, through an exec recorder storing all:
    (CPU s, wall s, bytes written)."""
    chunk = (fill * (32 * 1024 // len(fill) + 1))[: 32 * 1024]
    recordings = SessionRecordings(root, f"s-{secrets.token_hex(8)}")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    recorder = recordings.exec(0, "head", cap_bytes=size, timestamp=time.time())
    for i in range(size // len(chunk)):
        recorder.stdout(i * 1e-4, chunk)
    facts = recordings.close_all()
    return time.process_time() - cpu0, time.perf_counter() - wall0, facts[0].size


# -- the run --------------------------------------------------------------------------------------


def negotiated(bench: Bench) -> list[str]:
    lines = []
    for how in ("direct", "gateway"):
        verbose = bench.ssh(how, ["true"])
        at = verbose.index("LogLevel=ERROR")
        verbose[at - 1 : at + 1] = ["-v"]
        done = subprocess.run(verbose, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        found = re.findall(r"kex: (?:server->client|client->server) cipher: (\S+) MAC: (\S+)", done.stderr)
        kex = re.findall(r"kex: algorithm: (\S+)", done.stderr)
        lines.append(f"  client ↔ {'sshd' if how == 'direct' else 'gateway'}: {sorted(set(found))} kex {kex}")
    return lines


def onward_algorithms(bench: Bench) -> str:
    """What the gateway's onward connection gets: an asyncssh client with the gateway's ciphers."""
    import asyncio

    import asyncssh

    from jitgate.gateway.onward import CIPHERS

    async def probe() -> str:
        key = asyncssh.read_private_key(bench.direct_key)
        cert = asyncssh.read_certificate(bench.direct_cert)
        async with asyncssh.connect(
            "127.0.0.1", bench.sshd.port, username="deploy", client_keys=[(key, cert)],
            known_hosts=None, agent_path=None, config=[], preferred_auth="publickey",
            encryption_algs=list(CIPHERS),
        ) as conn:  # fmt: skip
            names = ("send_cipher", "send_mac", "recv_cipher", "recv_mac")
            return ", ".join(f"{n} {conn.get_extra_info(n)}" for n in names)

    return f"  gateway ↔ sshd (asyncssh {asyncssh.__version__}): {asyncio.run(probe())}"


def ending(world: GatewayWorld, runs: int) -> list[str]:
    """Seconds from a revoke's answer, and from a grant's end, until the user's ssh has exited."""
    from datetime import UTC, datetime

    def started(user: str, grant: str) -> subprocess.Popen[bytes]:
        ssh = subprocess.Popen(
            world.ssh_argv(user, "deploy@web-1", ["echo started; sleep 60"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if ssh.stdout is None or ssh.stdout.readline() != b"started\n":
            raise SystemExit("a session did not start")
        world.wait_for("a live session", lambda: [s for s in world.sessions() if s["grant"] == grant
                                                   and s["state"] == "live"])  # fmt: skip
        return ssh

    revoked: list[float] = []
    expired: list[float] = []
    for _ in range(runs):
        grant = world.grant("dave", "shell")
        ssh = started("dave", grant)
        begin = time.monotonic()
        world.revoke("dave", grant)
        ssh.wait(timeout=30)
        revoked.append(time.monotonic() - begin)
        grant = world.grant("dave", "shell", duration="3s")
        ends = datetime.fromisoformat(
            world.http("GET", f"/api/v1/grants/{grant}", "dave").json()["expires_at"]
        )
        ssh = started("dave", grant)
        ssh.wait(timeout=30)
        expired.append((datetime.now(UTC) - ends).total_seconds())
    lines = [f"5. an open session ends with its grant ({runs} of each; the gateway polls every 0.25 s)"]
    for label, samples in (
        ("revoke answered → user's ssh exited", revoked),
        ("grant's end → ssh exited", expired),
    ):
        p50, _ = percentiles(samples)
        lines.append(f"  {label:<40} p50 {p50 * 1000:6.0f} ms   max {max(samples) * 1000:6.0f} ms")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="runs of ssh … true, each way")
    parser.add_argument("--gib", type=float, default=1.0, help="GiB per throughput transfer")
    parser.add_argument("--throughput-runs", type=int, default=2, help="transfers of each kind, each way")
    parser.add_argument("--sessions", type=int, default=100, help="concurrent interactive sessions")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="broker worker processes")
    parser.add_argument("--sections", default="1,2,3,4,5", help="which figures, e.g. 2 or 1,2")
    parser.add_argument("--end-runs", type=int, default=10, help="sessions ended by revoke and by expiry")
    args = parser.parse_args()
    size = int(args.gib * 1024 * MIB)
    ensure_login_users(LOGINS)

    with (
        tempfile.TemporaryDirectory(prefix="jitgate-gwbench-") as tmp_name,
        tempfile.TemporaryDirectory(prefix="jitgate-gwbench-", dir="/dev/shm") as shm_name,
    ):
        tmp, shm = Path(tmp_name), Path(shm_name)
        shm.chmod(0o755)
        remote = shm / "remote"
        remote.mkdir()
        remote.chmod(0o777)
        blob = shm / "blob"
        with blob.open("wb") as sink:
            for _ in range(size // MIB):
                sink.write(bytes(MIB))
            sink.write(bytes(size % MIB))
        blob.chmod(0o644)
        factory = SshdFactory(TmpFactory(tmp))  # type: ignore[arg-type]
        (tmp / "world").mkdir()
        world = start_world(tmp / "world", factory, workers=args.workers)
        try:
            bench = Bench(world, args.workers)
            timed(bench.ssh("gateway", ["true"]))
            timed(bench.ssh("direct", ["true"]))
            print(f"{os.cpu_count()} cores, {args.workers} broker workers, loopback, one target sshd")
            print("negotiated (ssh -v, defaults):")
            print("\n".join(negotiated(bench)))
            print(onward_algorithms(bench))
            sections = set(args.sections.split(","))
            if "1" in sections:
                print("\n".join(latency(bench, args.runs)), flush=True)
            if "2" in sections:
                print("\n".join(throughput(bench, size, args.throughput_runs, blob, remote)), flush=True)
            if "5" in sections:
                print("\n".join(ending(world, args.end_runs)), flush=True)
            if not sections & {"3", "4"}:
                return

            bench.restart({})
            print(
                f"3. {args.sessions} concurrent interactive sessions (ssh -tt, a shell), each typing one loop"
            )
            gw_lines, gw_cpu, sample, typed = sessions_cost(
                bench, "gateway", args.sessions, lambda: gateway_pids(world), tmp / "gw-sessions"
            )
            print("\n".join(gw_lines), flush=True)
            direct_lines, _, _, _ = sessions_cost(
                bench, "direct", args.sessions, lambda: sshd_pids(bench), tmp / "direct-sessions"
            )
            print("\n".join(direct_lines), flush=True)

            print("\n".join(recording_cost(bench, size, args.throughput_runs, blob)), flush=True)
            repeat = max(100, args.sessions)
            per, empty = shell_recorder_cost(tmp / "recorder", sample, typed, repeat)
            kib = (len(sample) + len(typed)) / 1024
            share = per / gw_cpu * 100 if gw_cpu > 0 else float("nan")
            print(
                f"4b. the shell recorder alone, in-process: one session's stream of 3 ({kib:.1f} KiB, "
                f"{len(sample.splitlines())} output lines), {repeat} sessions"
            )
            print(
                f"  {per * 1000:.2f} ms/session = {share:.1f} % of the gateway's CPU per session (net);"
                f" of it {empty * 1000:.2f} ms opening and closing an empty recording,"
                f" {(per - empty) * 1e6 / kib:.0f} µs/KiB for the bytes"
            )
            record_size = min(size, 256 * MIB)
            print(f"4c. the exec recorder alone, in-process, {record_size / MIB:.0f} MiB stored in full:")
            for what, fill in (("NUL bytes (/dev/zero)", b"\0"), ("text (ASCII lines)", b"line 12345\n")):
                used, wall, written = exec_recorder_cost(tmp / "exec-recorder", record_size, fill)
                print(
                    f"  {what:<24} {record_size / MIB / used:7.1f} MiB/s of CPU ({wall:.1f} s wall), "
                    f"file {written / record_size:.1f}x the bytes"
                )
                shutil.rmtree(tmp / "exec-recorder")
            errors = [
                ln
                for ln in world.server.log.read_text(errors="replace").splitlines()
                if re.search(r"ERROR|Traceback|WARNING|refusing", ln)
            ]
            print(f"server log: {len(errors)} warning/error lines")
            for ln in errors[:20]:
                print(f"  {ln}")
        finally:
            world.server.stop()
            factory.stop_all()


if __name__ == "__main__":
    main()
