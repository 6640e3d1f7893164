"""One spelling per directory DN, so that the broker counts one group as one item.

The broker keeps count of who holds an elevation item by its string (``workflow/elevation.py``):
``CN=Prod-Admins, OU=Groups,DC=example,DC=org`` and ``cn=prod-admins,ou=groups,dc=example,dc=org``
name one group, and two roles spelling it differently must not take it from each other. So every
group DN of a policy is rewritten here, when the policy is loaded, to one canonical form:

- parsed as RFC 4514 (python-ldap's ``str2dn``, the OpenLDAP client library's parser), which
  drops the spaces around separators and decodes every escape (``\\2C`` and ``\\,`` are one comma);
- attribute types and values lowercased: the naming attributes of directories (``cn``, ``ou``,
  ``dc``, ``o``, ``uid``, ``l``, ``c``) match case-insensitively in OpenLDAP's schemas and in
  Active Directory, so the server finds the same entry under the lowercase spelling;
- the parts of a multi-valued RDN (``cn=a+sn=b``) sorted;
- written back with RFC 4514 escaping (``dn2str``).

A value written as hex-encoded BER (``cn=#04...``) is refused: write it as text.
"""

from __future__ import annotations

import ldap.dn

_AVA_BINARY = 2


def canonical_dn(text: str) -> str:
    """``text`` in the canonical spelling above; ``ValueError`` (one line) when it is not a DN."""
    try:
        rdns = ldap.dn.str2dn(text.strip())
    except ldap.DECODING_ERROR:
        raise ValueError(f"{text!r} is not a DN") from None
    if not rdns:
        raise ValueError(f"{text!r} is not a DN (it is empty)")
    canonical: list[list[tuple[str, str, int]]] = []
    for rdn in rdns:
        parts: list[tuple[str, str, int]] = []
        for attribute, value, flags in rdn:
            if flags & _AVA_BINARY:
                raise ValueError(f"{text!r}: write the value of {attribute} as text, not as hex-encoded BER")
            if not str(attribute) or not str(value):
                raise ValueError(f"{text!r} has an empty attribute type or value")
            parts.append((str(attribute).lower(), str(value).lower(), 1))
        canonical.append(sorted(parts))
    return str(ldap.dn.dn2str(canonical))
