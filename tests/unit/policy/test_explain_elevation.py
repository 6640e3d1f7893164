"""``jitgate policy explain`` and the role catalogue say, per target of a role that elevates, which
existing account a person is elevated as and with what: worked out from the policy alone."""

from jitgate.domain.identity import Identity
from jitgate.policy.catalogue import describe_role
from jitgate.policy.decision import explain
from jitgate.policy.loader import parse_policy

GROUP = "cn=prod-admins,ou=groups,dc=example,dc=org"
POLICY = parse_policy(
    f"""
targets:
  - name: orders-db
    kind: postgres
    admin_dsn_env: ORDERS_DB_ADMIN_DSN
  - name: shop-db
    kind: mariadb
    admin_dsn_env: SHOP_DB_ADMIN_DSN
  - name: corp-directory
    kind: ldap
    url: ldap://127.0.0.1:3899
    bind_dn: cn=admin,dc=example,dc=org
    bind_password_env: CORP_LDAP_BIND_PASSWORD
    user_dn: "uid={{user}},ou=people,dc=example,dc=org"
  - name: ad
    kind: ldap
    url: ldaps://dc.example.org
    bind_dn: cn=jitgate,dc=example,dc=org
    bind_password_file: /run/secrets/ad
    user_search: {{base: "ou=staff,dc=example,dc=org", filter: "(sAMAccountName={{user}})"}}
roles:
  - name: orders-admin
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [orders_admin], existing_login: "{{user}}"}}
    max_duration: 1h
    requesters: [group:dba]
    approvers: [group:leads]
  - name: orders-fresh
    targets: {{names: [orders-db]}}
    postgres: {{member_of: [readonly]}}
    max_duration: 1h
    requesters: [group:dba]
    approvers: [group:leads]
  - name: shop-admin
    targets: {{names: [shop-db]}}
    mariadb: {{roles: [shop_admin, shop_audit], existing_login: {{alice: "alice@10.%", bob: bobby}}}}
    max_duration: 1h
    requesters: [group:dba]
    approvers: [group:leads]
  - name: shop-ops
    targets: {{names: [shop-db]}}
    mariadb: {{roles: [shop_ops], existing_login: "{{user}}@10.%"}}
    max_duration: 1h
    requesters: [group:dba]
    approvers: [group:leads]
  - name: prod-admins
    targets: {{names: [corp-directory, ad]}}
    ldap: {{groups: ["{GROUP}"]}}
    max_duration: 1h
    requesters: [group:dba]
    approvers: [group:leads]
  - name: mapped-admins
    targets: {{names: [ad]}}
    ldap: {{groups: ["{GROUP}"], existing_account: {{carol: "c*(x)"}}}}
    max_duration: 1h
    requesters: [group:dba]
    approvers: [group:leads]
"""
)
ALICE = Identity("alice", frozenset({"dba"}))


def account_lines(role: str, who: Identity = ALICE) -> list[str]:
    lines = explain(POLICY, who, role).lines
    assert lines[1].startswith("targets: ")
    return [line for line in lines if line.split(":", 1)[0] in {t.name for t in POLICY.targets}]


def test_a_postgres_elevation_names_the_existing_login_and_its_roles() -> None:
    assert account_lines("orders-admin") == ["orders-db: elevates existing login alice with orders_admin"]


def test_a_role_that_creates_logins_says_nothing_about_existing_accounts() -> None:
    assert account_lines("orders-fresh") == []


def test_an_explicit_map_gives_each_identity_its_account_and_leaves_out_the_rest() -> None:
    assert account_lines("shop-admin") == [
        "shop-db: elevates existing account alice@10.% with shop_admin, shop_audit"
    ]
    assert account_lines("shop-admin", Identity("bob", frozenset({"dba"}))) == [
        "shop-db: elevates existing account bobby with shop_admin, shop_audit"
    ]
    assert account_lines("shop-admin", Identity("dave", frozenset({"dba"}))) == [
        "shop-db: no account mapped for dave: a request covering shop-db is refused"
    ]


def test_a_mariadb_template_keeps_its_own_host_whatever_the_name_holds() -> None:
    assert account_lines("shop-ops") == ["shop-db: elevates existing account 'alice'@'10.%' with shop_ops"]
    tricky = Identity("bob@localhost", frozenset({"dba"}))
    assert account_lines("shop-ops", tricky) == [
        "shop-db: elevates existing account 'bob@localhost'@'10.%' with shop_ops"
    ]


def test_a_directory_entry_is_the_dn_template_filled_or_the_search_that_finds_it() -> None:
    assert account_lines("prod-admins") == [
        f"corp-directory: entry from user_dn uid=alice,ou=people,dc=example,dc=org joins {GROUP}",
        f"ad: entry found under ou=staff,dc=example,dc=org by (sAMAccountName=alice) joins {GROUP}",
    ]


def test_the_account_is_escaped_as_the_directory_provider_escapes_it() -> None:
    sneaky = Identity("jo+admin", frozenset({"dba"}))
    (dn, _) = account_lines("prod-admins", sneaky)
    assert dn.startswith(r"corp-directory: entry from user_dn uid=jo\+admin,ou=people,")
    carol = Identity("carol", frozenset({"dba"}))
    assert account_lines("mapped-admins", carol) == [
        rf"ad: entry found under ou=staff,dc=example,dc=org by (sAMAccountName=c\2a\28x\29) joins {GROUP}"
    ]


def test_explaining_a_role_someone_may_not_request_still_names_their_account() -> None:
    outsider = Identity("alice", frozenset())
    result = explain(POLICY, outsider, "orders-admin")
    assert not result.may_request
    assert "orders-db: elevates existing login alice with orders_admin" in result.lines


def test_the_catalogue_shows_one_line_per_elevating_target() -> None:
    entry = describe_role(POLICY, ALICE, POLICY.roles[4])
    assert entry.accounts == account_lines("prod-admins")
    assert entry.access == [f"your directory entry in {GROUP}"]
    assert describe_role(POLICY, ALICE, POLICY.roles[0]).access == [
        "your existing postgres login in orders_admin"
    ]
    assert describe_role(POLICY, ALICE, POLICY.roles[1]).accounts == []
