"""A throwaway real OpenLDAP slapd on loopback ports, with its own configuration, data and TLS.

One ``Slapd`` per test session (per xdist worker): a ``slapd.conf`` with the mdb backend and the
core, cosine, inetorgperson and nis schemas in a temp dir, the base entries loaded with
``slapadd``, and slapd listening on ``ldap://`` (plain and StartTLS) and ``ldaps://`` on free
loopback ports with a server certificate of a CA made here. Besides the root DN (the test's own
hands) the directory has a service account, ``cn=jitgate,ou=services,...``, that may bind and
write only the membership attributes of groups: what the broker's bind DN needs and no more.

``stop()`` and ``start()`` take the server away and bring it back on the same ports with the same
data, for the directory-down paths. Without slapd the tests skip, except in CI (``CI=true``)
where they fail.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ldap
import ldap.dn
import ldap.filter
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support import component_missing

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
SERVICE_DN = f"cn=jitgate,ou=services,{SUFFIX}"
START_SECONDS = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssha(password: str) -> str:
    """``{SSHA}`` userPassword value, the form slapd checks binds against."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class Authority:
    """A CA and a loopback server certificate it signed, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_authority(directory: Path, name: str = "jitgate test directory CA") -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    authority = Authority(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    authority.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    authority.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    authority.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    authority.key_file.chmod(0o600)
    return authority


CONFIG = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
modulepath {modules}
moduleload back_mdb
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
sizelimit 5000

database mdb
maxsize 268435456
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {dir}/db
index objectClass eq
index uid,member,uniqueMember,memberUid eq

access to attrs=userPassword
  by anonymous auth
  by * none
access to attrs=member,uniqueMember,memberUid
  by dn.exact="{service_dn}" write
  by * read
access to *
  by * read
"""

BASE = """\
dn: {suffix}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{suffix}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{suffix}
objectClass: organizationalUnit
ou: services

dn: {service_dn}
objectClass: inetOrgPerson
cn: jitgate
sn: broker
userPassword: {service_pw}
"""


@dataclass
class Slapd:
    """One slapd: ``url`` (plain, StartTLS able), ``ldaps_url``, the CA that signed its certificate,
    the root DN's and the service account's passwords."""

    directory: Path
    port: int
    tls_port: int
    authority: Authority
    root_password: str = field(repr=False)
    service_password: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def start(self) -> None:
        if self.running:
            return
        log = (self.directory / "slapd.log").open("ab")
        # -d 0: stay in the foreground (a child we can stop by its process) and log nothing.
        self.process = subprocess.Popen(
            [str(SLAPD), "-d", "0", "-f", str(self.directory / "slapd.conf"), "-h",
             f"{self.url}/ {self.ldaps_url}/"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                detail = (self.directory / "slapd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"slapd exited with {self.process.returncode}: {detail}")
            try:
                self.root().unbind_s()
                return
            except ldap.LDAPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not answer on {self.url} within {START_SECONDS:g}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def root(self) -> ldap.ldapobject.LDAPObject:
        """A connection bound as the root DN, for setting up and looking at the directory."""
        conn = ldap.initialize(self.url)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
        conn.set_option(ldap.OPT_TIMEOUT, 10)
        conn.simple_bind_s(ROOT_DN, self.root_password)
        return conn

    def values(self, dn: str, attribute: str) -> set[str]:
        """The values of ``attribute`` of the entry ``dn`` (empty if it has none or is gone)."""
        conn = self.root()
        try:
            found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [attribute])
        except ldap.NO_SUCH_OBJECT:
            return set()
        finally:
            conn.unbind_s()
        attributes = found[0][1] if found else {}
        return {value.decode() for value in attributes.get(attribute, [])}


def start_slapd(directory: Path) -> Slapd:
    """Configure, load and start a slapd in ``directory``; the caller stops it."""
    if not SLAPD.exists() or not SLAPADD.exists():
        component_missing("OpenLDAP slapd (apt-get install -y slapd ldap-utils)")
    if not (SCHEMA / "nis.schema").exists():
        component_missing(f"the OpenLDAP schema files in {SCHEMA}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "db").mkdir(exist_ok=True)
    authority = make_authority(directory / "tls")
    slapd = Slapd(
        directory=directory,
        port=_free_port(),
        tls_port=_free_port(),
        authority=authority,
        root_password=secrets.token_urlsafe(12),
        service_password=f"svc-{secrets.token_urlsafe(12)}",
    )
    (directory / "slapd.conf").write_text(
        CONFIG.format(
            schema=SCHEMA,
            modules=MODULES,
            dir=directory,
            ca=authority.ca_file,
            cert=authority.cert_file,
            key=authority.key_file,
            suffix=SUFFIX,
            root_dn=ROOT_DN,
            root_pw=ssha(slapd.root_password),
            service_dn=SERVICE_DN,
        )
    )
    base = directory / "base.ldif"
    base.write_text(
        BASE.format(suffix=SUFFIX, service_dn=SERVICE_DN, service_pw=ssha(slapd.service_password))
    )
    loaded = subprocess.run(
        [str(SLAPADD), "-q", "-f", str(directory / "slapd.conf"), "-l", str(base)],
        capture_output=True,
        text=True,
        check=False,
    )
    if loaded.returncode != 0:
        raise RuntimeError(f"slapadd failed: {loaded.stderr.strip()[-2000:]}")
    slapd.start()
    return slapd


def remove(slapd: Slapd) -> None:
    slapd.stop()
    shutil.rmtree(slapd.directory, ignore_errors=True)


def refusing_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    return _free_port()


@dataclass
class Tree:
    """A subtree of its own for one test (``ou=<name>,dc=example,dc=org`` with ``ou=people`` and
    ``ou=groups`` under it), so tests sharing one slapd never see each other's entries."""

    slapd: Slapd
    base: str

    @property
    def people(self) -> str:
        return f"ou=people,{self.base}"

    @property
    def groups(self) -> str:
        return f"ou=groups,{self.base}"

    def person_dn(self, uid: str) -> str:
        return f"uid={ldap.dn.escape_dn_chars(uid)},{self.people}"

    def group_dn(self, cn: str) -> str:
        return f"cn={ldap.dn.escape_dn_chars(cn)},{self.groups}"

    def _add(self, dn: str, attributes: dict[str, list[str]]) -> None:
        conn = self.slapd.root()
        try:
            conn.add_s(
                dn, [(name, [value.encode() for value in values]) for name, values in attributes.items()]
            )
        finally:
            conn.unbind_s()

    def add_person(self, uid: str, *, posix: bool = False, mail: str | None = None, rdn: str = "uid") -> str:
        """An inetOrgPerson (posixAccount too if ``posix``) named ``uid={uid}`` or, with
        ``rdn="cn"``, ``cn={uid}``; its DN."""
        dn = self.person_dn(uid) if rdn == "uid" else f"cn={ldap.dn.escape_dn_chars(uid)},{self.people}"
        attributes = {"objectClass": ["inetOrgPerson"], "uid": [uid], "cn": [uid], "sn": [uid]}
        if posix:
            attributes["objectClass"].append("posixAccount")
            attributes |= {"uidNumber": ["10000"], "gidNumber": ["10000"], "homeDirectory": [f"/home/{uid}"]}
        if mail:
            attributes["mail"] = [mail]
        self._add(dn, attributes)
        return dn

    def add_group(self, cn: str, kind: str = "groupOfNames", members: tuple[str, ...] = ()) -> str:
        """A group of ``kind`` (groupOfNames, groupOfUniqueNames, posixGroup) with ``members``
        (DNs, or uids for posixGroup). groupOfNames and groupOfUniqueNames need one: by default the
        root DN, which no test elevates."""
        dn = self.group_dn(cn)
        attributes: dict[str, list[str]] = {"objectClass": [kind], "cn": [cn]}
        if kind == "posixGroup":
            attributes["gidNumber"] = ["20000"]
            if members:
                attributes["memberUid"] = list(members)
        else:
            attributes[MEMBERSHIP[kind]] = list(members or (ROOT_DN,))
        self._add(dn, attributes)
        return dn

    def remove(self, dn: str) -> None:
        conn = self.slapd.root()
        try:
            conn.delete_s(dn)
        finally:
            conn.unbind_s()

    def set_members(self, group: str, attribute: str, values: list[str]) -> None:
        conn = self.slapd.root()
        try:
            conn.modify_s(group, [(ldap.MOD_REPLACE, attribute, [value.encode() for value in values])])
        finally:
            conn.unbind_s()

    def groups_of(self, value: str, attribute: str = "member") -> set[str]:
        """DNs of the groups of this tree whose ``attribute`` holds ``value`` (a search, as a
        consumer of the directory would ask)."""
        conn = self.slapd.root()
        try:
            query = f"({attribute}={ldap.filter.escape_filter_chars(value)})"
            found = conn.search_s(self.groups, ldap.SCOPE_ONELEVEL, query, ["1.1"])
        finally:
            conn.unbind_s()
        return {str(dn) for dn, _ in found if dn}


MEMBERSHIP = {"groupOfNames": "member", "groupOfUniqueNames": "uniqueMember", "posixGroup": "memberUid"}


def new_tree(slapd: Slapd, name: str) -> Tree:
    slapd.start()  # a test before this one may have stopped it
    tree = Tree(slapd, f"ou={name},{SUFFIX}")
    tree._add(tree.base, {"objectClass": ["organizationalUnit"], "ou": [name]})
    tree._add(tree.people, {"objectClass": ["organizationalUnit"], "ou": ["people"]})
    tree._add(tree.groups, {"objectClass": ["organizationalUnit"], "ou": ["groups"]})
    return tree


PASSWORD_ENV = "CORP_LDAP_BIND_PASSWORD"


def target_yaml(
    slapd: Slapd,
    tree: Tree,
    *,
    name: str = "corp",
    url: str | None = None,
    start_tls: bool = False,
    ca_file: Path | None = None,
    user_search: str | None = None,
    options: str = "",
    password_file: Path | None = None,
) -> str:
    """One ``kind: ldap`` target of a policy, bound as the service account, entries under ``tree``:
    found by the ``user_dn`` template unless ``user_search`` (a YAML mapping) is given."""
    lines = [
        f"  - name: {name}",
        "    kind: ldap",
        f"    url: {url or slapd.url}",
        f'    bind_dn: "{SERVICE_DN}"',
        f"    bind_password_file: {password_file}"
        if password_file
        else f"    bind_password_env: {PASSWORD_ENV}",
        f"    user_search: {user_search}" if user_search else f'    user_dn: "uid={{user}},{tree.people}"',
    ]
    if start_tls:
        lines.append("    start_tls: true")
    if ca_file is not None:
        lines.append(f"    tls_ca_file: {ca_file}")
    if options:
        lines.append(f"    options: {options}")
    return "\n".join(lines) + "\n"
