"""Policy files: validated, unknown keys refused, every error with its file and line."""

import re
import time
from pathlib import Path

import pytest

from jitgate.errors import PolicyFileError
from jitgate.policy.loader import MAX_POLICY_BYTES, load_policy, parse_policy

BASE = """\
targets:
  - name: web-prod-1
    kind: ssh
    address: 10.0.0.5
    labels: {env: prod}
roles:
  - name: prod-shell
    targets: {labels: {env: prod}}
    ssh: {logins: [deploy]}
    max_duration: 4h
    requesters: [group:engineers]
    approvers: [group:sre-leads]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "policy.yaml")
    return caught.value.problems


def test_a_good_policy_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE)
    policy = load_policy(path)
    role = policy.role("prod-shell")
    assert role is not None
    assert [t.name for t in policy.targets_of(role)] == ["web-prod-1"]
    assert role.min_duration.total_seconds() == 60
    assert role.approvals_required == 1


def test_bad_duration_names_file_line_and_key() -> None:
    found = problems(BASE.replace("max_duration: 4h", "max_duration: forever"))
    assert found == [
        "policy.yaml:10: roles[0].max_duration: 'forever' is not a duration (use e.g. 90s, 30m, 1h30m, 2d)"
    ]


def test_bare_numbers_are_not_durations() -> None:
    assert "write units" in problems(BASE.replace("max_duration: 4h", "max_duration: 3600"))[0]


def test_unknown_keys_are_errors_with_their_line() -> None:
    found = problems(
        BASE.replace("    ssh: {logins: [deploy]}\n", "    ssh: {logins: [deploy]}\n    aproval: auto\n")
    )
    assert found == ["policy.yaml:10: roles[0].aproval: unknown key"]


def test_malformed_yaml_names_the_line() -> None:
    found = problems(BASE + "  - name: [unclosed\n")
    assert found[0].startswith("policy.yaml:14: malformed YAML")


def test_duplicate_keys_are_refused() -> None:
    found = problems(BASE.replace("    max_duration: 4h\n", "    max_duration: 4h\n    max_duration: 8h\n"))
    assert found == ["policy.yaml:11: duplicate key 'max_duration'"]


def test_all_problems_are_reported() -> None:
    text = BASE.replace("max_duration: 4h", "max_duration: 0s").replace("group:engineers", "engineers")
    found = problems(text)
    assert len(found) == 2
    assert all(p.startswith("policy.yaml:") for p in found)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("names: [", "names: ["), None),
        (("targets: {labels: {env: prod}}", "targets: {names: [nowhere]}"), "unknown target 'nowhere'"),
        (("targets: {labels: {env: prod}}", "targets: {labels: {env: moon}}"), "selects no target"),
        (("    approvers: [group:sre-leads]\n", ""), "needs approvers"),
        (
            ("ssh: {logins: [deploy]}", "ssh: {logins: [deploy], extensions: [permit-everything]}"),
            "not an OpenSSH certificate extension",
        ),
        (("max_duration: 4h", "max_duration: 4h\n    default_duration: 5h"), "default_duration must lie"),
        (("    ssh: {logins: [deploy]}\n", ""), "has no ssh:"),
    ],
)
def test_inconsistent_policies_are_refused(change: tuple[str, str], message: str | None) -> None:
    text = BASE.replace(*change)
    if message is None:
        parse_policy(text)
        return
    assert any(message in p for p in problems(text))


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")


def test_the_demo_policy_is_valid() -> None:
    from importlib.resources import files

    parse_policy((files("jitgate") / "demo" / "policy.yaml").read_text(), "demo.yaml")


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("address", '"10.0.0.5\\n  ProxyCommand touch /tmp/owned"', "is not a host name or IP address"),
        ("address", "-oProxyCommand=x", "is not a host name or IP address"),
        ("address", '"10.0.0.5 -p 2222"', "is not a host name or IP address"),
        ("address", "'web\"1'", "is not a host name or IP address"),
        ("address", "web-%h", "is not a host name or IP address"),
        ("address", "'10.0.0.5,*'", "is not a host name or IP address"),
        ("address", "'fe80::1%eth0'", "is not a host name or IP address"),
        ("address", "'[::1]'", "is not a host name or IP address"),
        ("address", "10.0.0.500", "is not a valid IPv4 address"),
        ("address", "'1::2::3'", "is not a valid IPv6 address"),
        ("address", "-web.example.com", "is not a host name or IP address"),
        ("port", "0", "greater than or equal to 1"),
        ("port", "65536", "less than or equal to 65535"),
        ("name", "web@1", "is not a target name"),
        ("name", "'web-1\\n  ProxyCommand x'", "is not a target name"),
        ("host_principals", "['web-1', 'a b']", "is not a host name or IP address"),
    ],
)
def test_what_reaches_an_ssh_config_line_or_argument_is_refused_with_its_line(
    key: str, value: str, error: str
) -> None:
    line = 2 if key == "name" else 4
    text = BASE.replace("    kind: ssh\n", f"    kind: ssh\n    {key}: {value}\n")
    if key == "address":
        text = text.replace("    address: 10.0.0.5\n", "")
    if key == "name":
        text = BASE.replace("  - name: web-prod-1\n", f"  - name: {value}\n")
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith(f"policy.yaml:{line}: targets[0].{key}: "), found
    assert error in found[0]
    assert "\n" not in found[0]


@pytest.mark.parametrize("address", ["10.0.0.5", "web-1.example.com", "::1", "2001:db8::5", "db_1.internal"])
def test_host_names_and_ip_literals_are_addresses(address: str) -> None:
    assert parse_policy(BASE.replace("10.0.0.5", f"'{address}'")).targets[0].address == address


@pytest.mark.parametrize(
    "login", ["-oProxyCommand=x", "deploy@web-1", "Deploy", "de ploy", "a" * 33, "1deploy"]
)
def test_logins_are_conservative_posix_user_names(login: str) -> None:
    found = problems(BASE.replace("logins: [deploy]", f"logins: ['{login}']"))
    assert found == [f"policy.yaml:9: roles[0].ssh.logins: {login!r} is not a valid login name"]


BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)


def test_an_alias_bomb_is_refused_at_once_with_its_line() -> None:
    assert len(BILLION_LAUGHS) < 400
    started = time.perf_counter()
    found = problems(BILLION_LAUGHS)
    assert time.perf_counter() - started < 0.5
    assert found == ["policy.yaml:2: YAML alias *a is not allowed in a policy; write the value out"]


def test_aliases_are_refused_even_where_they_would_be_harmless() -> None:
    text = BASE.replace("    labels: {env: prod}\nroles:", "    labels: &prod {env: prod}\nroles:").replace(
        "targets: {labels: {env: prod}}", "targets: {labels: *prod}"
    )
    assert problems(text) == [
        "policy.yaml:8: YAML alias *prod is not allowed in a policy; write the value out"
    ]


def test_an_oversized_policy_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE + "#" * (MAX_POLICY_BYTES + 1))
    # Refused by its size on disk (the message names the path), never read into memory.
    with pytest.raises(PolicyFileError, match=f"^{re.escape(str(path))}: policy is larger than"):
        load_policy(path)
    with pytest.raises(
        PolicyFileError, match=f"^policy.yaml: policy is larger than {MAX_POLICY_BYTES} bytes"
    ):
        parse_policy(path.read_text(), "policy.yaml")


def test_deep_nesting_is_one_clear_error() -> None:
    assert problems("a: " + "[" * 5000 + "]" * 5000) == ["policy.yaml: policy is nested too deeply"]
