"""The connection cap leaves descriptors for everything that is not a client."""

from __future__ import annotations

import pytest

from jitgate.api.serving import RESERVED_DESCRIPTORS, connection_cap
from jitgate.errors import InvalidInput


def test_the_cap_is_the_setting_when_the_descriptor_limit_has_room_for_it() -> None:
    assert connection_cap(4096, 65536) == 4096


def test_the_cap_shrinks_to_keep_descriptors_for_the_database_and_the_audit_files() -> None:
    assert connection_cap(4096, 1024) == 1024 - RESERVED_DESCRIPTORS


def test_a_descriptor_limit_without_room_for_connections_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidInput, match=r"descriptor limit \(256\).*ulimit -n"):
        connection_cap(4096, 256)
