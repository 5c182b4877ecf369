"""Batched background writes: in order, all of them, without a flush too."""

from __future__ import annotations

import threading
import time

from serving.memory.batching import BatchWriter


def test_flush_writes_every_item_in_order():
    batches: list[list[int]] = []
    writer = BatchWriter(batches.append, name="test", seconds=60)
    for i in range(1000):
        writer.add(i)
    writer.flush()
    assert [i for batch in batches for i in batch] == list(range(1000))
    writer.flush()  # nothing new: no empty batch
    assert sum(map(len, batches)) == 1000


def test_the_thread_writes_within_its_interval():
    written = threading.Event()
    writer = BatchWriter(lambda items: written.set(), name="test", seconds=0.02)
    writer.add("line")
    assert written.wait(2)


def test_adds_from_many_threads_all_land_once():
    seen: list[tuple[int, int]] = []
    writer = BatchWriter(seen.extend, name="test", seconds=0.001)

    def produce(n: int) -> None:
        for i in range(2000):
            writer.add((n, i))
            if i % 500 == 0:
                time.sleep(0.002)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.flush()
    assert sorted(seen) == [(n, i) for n in range(4) for i in range(2000)]
    for n in range(4):  # each producer's items in the order it added them
        assert [i for m, i in seen if m == n] == list(range(2000))


def test_a_failed_batch_does_not_stop_the_writer(caplog):
    written = threading.Event()
    calls = []

    def write(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("disk full")
        written.set()

    writer = BatchWriter(write, name="flaky", seconds=0.01)
    writer.add("first")
    deadline = time.monotonic() + 2
    while len(calls) < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    writer.add("second")
    assert written.wait(2)
    assert calls[-1] == ["second"]
    assert "flaky: writing a batch failed" in caplog.text
