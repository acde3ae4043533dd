"""Message: immutable, and build_message (the hot paths' constructor) equal to Message(...) in every way."""

from __future__ import annotations

import os
import pickle
import time

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


def test_new_message_fills_id_time_and_first_attempt() -> None:
    before = time.time()
    made = message_module.new_message("a.b", {"x": 1}, {"h": "v"}, "c", "r.t", "s", 2.0, 5, "k")
    after = time.time()
    assert type(made) is Message and made.attempt == 1
    assert before <= made.timestamp <= after
    assert made.id[:16] == message_module.new_id()[:16] and made.id[16:].isdigit()
    assert made == Message(
        "a.b", {"x": 1}, {"h": "v"}, made.id, "c", "r.t", made.timestamp, "s", 2.0, 1, 5, "k"
    )
    other = message_module.new_message("a.b", None, {}, None, None, None, None, 0, None)
    assert other.id != made.id


def test_new_message_builds_through_the_constructor_without_the_fast_path() -> None:
    made = message_module._publish_constructed("a.b", 1, {}, None, None, None, None, 0, None)
    assert type(made) is Message and made.attempt == 1 and made.payload == 1
