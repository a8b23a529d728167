"""Helpers every backend shares (``taskstore.backends.base``)."""

from __future__ import annotations

import multiprocessing
import os
import sys

import pytest

from taskstore.backends.base import write_token
from taskstore.testing import run_barrier_threads


def test_write_tokens_are_unique_across_threads() -> None:
    """8 threads released together draw 8 × 2,000 tokens of 12 bytes: no two are equal."""
    drawn: list[list[bytes]] = [[] for _ in range(8)]

    def draw(index: int) -> None:
        drawn[index].extend(write_token() for _ in range(2_000))

    assert run_barrier_threads(8, draw) == [None] * 8
    tokens = [token for batch in drawn for token in batch]
    assert len(tokens) == 16_000
    assert all(len(token) == 12 for token in tokens)
    assert len(set(tokens)) == 16_000


def _child_token(queue: multiprocessing.Queue[bytes]) -> None:
    queue.put(write_token())


@pytest.mark.skipif(
    not hasattr(os, "register_at_fork") or sys.platform == "win32", reason="needs fork"
)
def test_a_forked_child_draws_tokens_of_its_own() -> None:
    """A forked child does not continue the parent's sequence: its tokens have another
    random part, so a child and its parent never hand out the same token."""
    mine = write_token()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bytes] = context.Queue()
    child = context.Process(target=_child_token, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    assert theirs[:8] != mine[:8]
    assert write_token()[:8] == mine[:8]
