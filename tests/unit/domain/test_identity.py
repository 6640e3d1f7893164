"""Identity names: local names and namespaced external names never meet; the broker's names are reserved."""

from __future__ import annotations

import pytest

from jitgate.domain.identity import RESERVED_NAMES, SYSTEM, local_name_problem, namespaced_name


@pytest.mark.parametrize("name", ["jitgate", "system", "JitGate", "local-admin"])
def test_the_brokers_own_names_are_reserved(name: str) -> None:
    assert local_name_problem(name) == f"{name!r} is reserved for the broker itself"


def test_the_system_actor_is_among_the_reserved_names() -> None:
    assert SYSTEM.name in RESERVED_NAMES


@pytest.mark.parametrize("name", ["oidc:bob", "local:root", "", "-x", "a b"])
def test_a_local_name_never_has_the_shape_of_a_namespaced_one(name: str) -> None:
    assert local_name_problem(name) == f"{name!r} is not a valid user name"


def test_external_names_are_namespaced_and_one_per_subject() -> None:
    assert namespaced_name("oidc", "bob") == "oidc:bob"
    assert local_name_problem(namespaced_name("oidc", "bob")) is not None
    long_a, long_b = "x" * 101 + "a", "x" * 101 + "b"
    assert namespaced_name("oidc", long_a) != namespaced_name("oidc", long_b)
    assert namespaced_name("oidc", "a/b") == namespaced_name("oidc", "a/b")
    with pytest.raises(ValueError, match="namespace"):
        namespaced_name("Bad:ns", "x")
