"""The real ``jitgate`` command against a real server prints what others typed as inert text: no
Rich markup is rendered and no control character reaches the terminal, also for rows written
before the broker checked its input. Lists follow every page, so nothing stays hidden."""

from __future__ import annotations

import json
import sqlite3

import httpx

from integration.cli.test_cli_end_to_end import Broker, broker

__all__ = ["broker"]  # the real server fixture

MARKUP = "INC-1 [bold red]APPROVED by security[/bold red] [link=https://evil.example]docs[/link]"
ESCAPES = (
    "INC-2 \x1b[2J\x1b[1;1H\x1b]8;;https://evil.example\x07click\x1b]8;;\x07 \u202eexe.txt\u202c \x9b31m"
)


def assert_inert(output: str) -> None:
    raw = output.encode()
    assert b"\x1b" not in raw
    assert b"\x07" not in raw
    assert "\x9b" not in output
    assert "\u202e" not in output
    assert "\u202c" not in output


def test_markup_and_escapes_in_reasons_are_printed_as_data(broker: Broker) -> None:
    marked = broker.json("request", "prod-shell", "--reason", MARKUP)
    old = broker.json("request", "prod-shell", "--reason", "INC-2 placeholder")
    # A row from before the input check: written straight into the database.
    with sqlite3.connect(broker.data_dir / "jitgate.db") as conn:
        conn.execute("UPDATE requests SET reason = ? WHERE id = ?", (ESCAPES, old["id"]))
    refused = broker.run("request", "prod-shell", "--reason", ESCAPES)
    assert refused.returncode == 3
    assert refused.stderr.startswith("error: reason contains U+001B")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert_inert(refused.stderr)

    for args, user in (
        (("requests", "--reviewable"), "bob"),
        (("requests", "--mine"), "alice"),
        (("show", marked["id"]), "bob"),
        (("show", old["id"]), "bob"),
    ):
        done = broker.run(*args, user=user, check=True)
        assert_inert(done.stdout + done.stderr)
    table = broker.run("requests", "--reviewable", user="bob", check=True).stdout
    assert "[bold red]APPROVED" in table  # shown as typed, not rendered
    assert "[link=https://evil.example]" in table
    shown = broker.run("show", old["id"], user="bob", check=True).stdout
    assert "\\x1b[2J" in shown  # the hidden parts are made visible
    assert "\\u202eexe.txt" in shown
    denied = broker.run("deny", marked["id"], "--comment", "[blink]no[/blink]", user="bob", check=True)
    assert "[blink]no[/blink]" in denied.stdout
    audit = broker.run("audit", user="alice", check=True)
    assert_inert(audit.stdout)
    assert "[bold red]" in audit.stdout


def test_lists_follow_every_page(broker: Broker) -> None:
    """More than one page of the API's largest (500): the CLI shows all, the oldest included."""
    headers = {"Authorization": f"Bearer {broker.tokens['alice']}"}
    with httpx.Client(base_url=broker.url, headers=headers, timeout=30) as client:
        made = [
            client.post("/api/v1/requests", json={"role": "stage-shell", "duration": "10m"}).json()
            for _ in range(520)
        ]
    grants = json.loads(broker.run("grants", "--json", check=True).stdout)
    assert sorted(g["id"] for g in grants) == sorted(m["grant"]["id"] for m in made)
    requests = json.loads(broker.run("requests", "--mine", "--json", check=True).stdout)
    assert {m["id"] for m in made} <= {r["id"] for r in requests}
    few = json.loads(broker.run("requests", "--mine", "--json", "--limit", "3", check=True).stdout)
    assert len(few) == 3


def test_past_the_pending_cap_the_cli_exits_7_with_one_line(broker: Broker) -> None:
    headers = {"Authorization": f"Bearer {broker.tokens['alice']}"}
    with httpx.Client(base_url=broker.url, headers=headers, timeout=30) as client:
        for n in range(10):  # the default cap
            made = client.post("/api/v1/requests", json={"role": "prod-shell", "reason": f"INC-{n}"})
            assert made.status_code == 201
    refused = broker.run("request", "prod-shell", "--reason", "INC-11")
    assert refused.returncode == 7
    assert refused.stderr == (
        "error: alice already has 10 requests waiting for review, the most allowed; "
        "cancel one or wait for a decision\n"
    )
