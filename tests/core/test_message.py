"""Message: immutable, and build_message (the hot paths' constructor) equal to Message(...) in every way."""

from __future__ import annotations

import os
import pickle

import attrs
import pytest

from amb_core import message as message_module
from amb_core.message import Message, build_message

FIELDS = ("a.b", {"x": [1, 2]}, {"h": "v"}, "id-1", "c-1", "r.t", 12.5, "agent", 3.0, 2, 7, "k")


def test_build_message_takes_the_fast_path_here() -> None:
    assert build_message is not Message, "CPython allows the layout swap; the fast path is in use"


def test_build_message_equals_the_constructor() -> None:
    built, made = build_message(*FIELDS), Message(*FIELDS)
    assert type(built) is Message
    assert built == made and repr(built) == repr(made)
    assert attrs.asdict(built) == attrs.asdict(made)
    assert built.evolve(attempt=3) == made.evolve(attempt=3)
    assert pickle.loads(pickle.dumps(built)) == made


def test_built_messages_are_frozen_like_the_others() -> None:
    built = build_message(*FIELDS)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.topic = "other"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del built.payload  # type: ignore[misc]


def test_the_constructor_serves_when_the_layout_swap_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*fields: object) -> Message:
        raise TypeError("__class__ assignment: layout differs")

    monkeypatch.setattr(message_module, "_Unguarded", refuse)
    assert message_module._unguarded_works() is False


def test_ids_are_unique_and_keep_their_shape() -> None:
    ids = [message_module.new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    prefix = ids[0][:16]
    assert all(i[:16] == prefix and i[16:].isdigit() for i in ids)
    assert all(Message("a.b", None).id != Message("a.b", None).id for _ in range(10))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    """Parent and child share the counter's state at the fork: the child must not repeat ids."""
    read, write = os.pipe()
    before = message_module.new_id()
    pid = os.fork()
    if pid == 0:  # the child: report its next two ids, then leave without running pytest's exit
        try:
            os.write(write, f"{message_module.new_id()} {message_module.new_id()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [message_module.new_id(), message_module.new_id()]
    assert len(child) == 2 and not set(child) & set(parent)
    assert child[0][:16] != before[:16], "the child keeps its parent's prefix"
    assert parent[0][:16] == before[:16]
