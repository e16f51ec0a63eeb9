"""Ids: prefixed, 32 hex digits, unique and in creation order, across threads and forks."""

from __future__ import annotations

import os
import random
import re
import threading
import time

from agentkeep.ids import id_at, new_id, new_ids

ID = re.compile(r"^msg_[0-9a-f]{32}$")


def _next_millisecond() -> None:
    """Return once the clock ids read (milliseconds) has moved on."""
    now = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == now:
        time.sleep(0.0001)


def test_ids_are_prefixed_hex_and_sort_in_creation_order() -> None:
    made = [new_id("msg") for _ in range(500)] + new_ids("msg", 500) + new_ids("msg", 1)
    assert all(ID.match(i) for i in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_ids_carry_their_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    (ident,) = new_ids("msg", 1)
    after = time.time_ns() // 1_000_000
    assert before <= int(ident[4:16], 16) <= after
    assert id_at("msg", 5, 7) == "msg_" + f"{(5 << 80) | 7:032x}"


def test_ids_are_unique_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def make(k: int) -> None:
        for _ in range(2000):
            out[k].extend(new_ids("msg", 3))

    threads = [threading.Thread(target=make, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in out for i in ids]
    assert len(set(every)) == len(every) == 4 * 2000 * 3


def test_an_application_seeding_random_does_not_make_ids_repeat() -> None:
    random.seed(1234)
    first = new_ids("msg", 1)
    _next_millisecond()  # a new millisecond: a new random start
    random.seed(1234)
    second = new_ids("msg", 1)
    assert first[0][16:] != second[0][16:]


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_ids("msg", 1)  # the parent's generator has state to copy
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            _next_millisecond()
            os.write(write, " ".join(new_ids("msg", 5)).encode())
        finally:
            os._exit(0)
    os.close(write)
    _next_millisecond()
    mine = new_ids("msg", 5)
    with os.fdopen(read) as pipe:
        theirs = pipe.read().split()
    os.waitpid(pid, 0)
    assert len(theirs) == 5
    # Made in (about) the same milliseconds by two processes: the random parts differ.
    assert {i[16:] for i in mine}.isdisjoint(i[16:] for i in theirs)
