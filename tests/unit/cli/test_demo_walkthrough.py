"""What ``jitgate demo`` tells a newcomer to run, for each way the demo can be started."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from jitgate.cli.demowalk import LOCAL_POSTGRES, DemoPlace, demo_policy_text, walkthrough
from jitgate.policy.loader import parse_policy

PACKAGED = (files("jitgate") / "demo" / "policy.yaml").read_text()
POLICY = parse_policy(PACKAGED, "demo-policy.yaml")
REPO = Path("/src/jitgate")


def place(**changes: object) -> DemoPlace:
    values: dict[str, object] = {
        "data_dir": REPO / "demo-data",
        "listen": "127.0.0.1:8080",
        "gateway_listen": None,
        "cwd": REPO,
        "activate": REPO / ".venv" / "bin" / "activate",
        "sshd_script": REPO / "scripts" / "demo-sshd",
        "user": "root",
        "root": True,
    }
    values.update(changes)
    return DemoPlace(**values)  # type: ignore[arg-type]


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


def test_the_default_demo_says_how_to_set_up_a_shell_and_start_the_target() -> None:
    shown = lines(walkthrough(POLICY, place(data_dir=Path("demo-data")), {}))
    assert "cd /src/jitgate" in shown
    assert ". .venv/bin/activate" in shown
    assert "export JITGATE_URL=http://127.0.0.1:8080" in shown
    assert "cd /src/jitgate && scripts/demo-sshd demo-data web-1" in shown
    assert "JITGATE_TOKEN=$(tok alice) jitgate ssh web-1 -- id" in shown
    assert any(line.startswith("2. SSH: web-1 is 127.0.0.1:2222.") for line in shown)


def test_without_the_admin_dsn_the_demo_says_exactly_how_to_restart_with_a_local_postgresql() -> None:
    for data_dir in (Path("demo-data"), REPO / "demo-data"):
        shown = lines(walkthrough(POLICY, place(data_dir=data_dir), {}))
        assert f"DEMO_ORDERS_DB_ADMIN_DSN={LOCAL_POSTGRES} make run" in shown
    assert not any("jitgate db" in line for line in shown)


def test_with_the_admin_dsn_the_demo_gives_the_request_and_the_db_command() -> None:
    shown = lines(walkthrough(POLICY, place(), {"DEMO_ORDERS_DB_ADMIN_DSN": LOCAL_POSTGRES}))
    assert "JITGATE_TOKEN=$(tok dave) jitgate request orders-read --reason report --for 15m" in shown
    assert "JITGATE_TOKEN=$(tok dave) jitgate db orders-db --exec -- -c 'select current_user'" in shown
    assert LOCAL_POSTGRES not in "\n".join(shown)


def test_a_demo_elsewhere_repeats_its_own_flags_and_points_the_script_at_its_url() -> None:
    here = place(data_dir=Path("/var/tmp/d"), listen="127.0.0.1:9000")
    shown = lines(walkthrough(POLICY, here, {}))
    assert "cd /src/jitgate && JITGATE_URL=http://127.0.0.1:9000 scripts/demo-sshd /var/tmp/d web-1" in shown
    restart = f"DEMO_ORDERS_DB_ADMIN_DSN={LOCAL_POSTGRES} .venv/bin/jitgate demo --data-dir /var/tmp/d"
    assert f"{restart} --listen 127.0.0.1:9000" in shown
    assert (
        ".venv/bin/jitgate demo --data-dir /var/tmp/d --listen 127.0.0.1:9000 --gateway-listen 127.0.0.1:2200"
        in shown
    )


def test_a_normal_user_is_told_to_log_in_as_themself() -> None:
    shown = lines(walkthrough(POLICY, place(user="jane", root=False, activate=None), {}))
    assert "JITGATE_TOKEN=$(tok alice) jitgate ssh web-1 -l jane -- id" in shown
    assert not any(line.startswith(". ") for line in shown)


def test_with_the_gateway_on_the_demo_shows_both_ways_through_it() -> None:
    shown = lines(walkthrough(POLICY, place(gateway_listen="127.0.0.1:2200"), {}))
    assert "JITGATE_TOKEN=$(tok alice) jitgate ssh web-1 --via-gateway -- id" in shown
    assert "ssh -p 2200 deploy@web-1@127.0.0.1" in shown


def test_the_demo_policy_grants_a_normal_user_their_own_login_and_root_nothing_more() -> None:
    assert demo_policy_text(PACKAGED, None) == PACKAGED
    mine = parse_policy(demo_policy_text(PACKAGED, "jane"), "demo-policy.yaml")
    shells = [r for r in mine.roles if r.ssh is not None]
    assert shells
    assert all(r.ssh is not None and r.ssh.logins == ("deploy", "jane") for r in shells)
    assert demo_policy_text(PACKAGED, "not a login!") == PACKAGED
