"""stt.serve.engine.StreamBatcher: the chunks of live streams that arrive together run as one
batch, each stream gets its own partial (or its own error), in order."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from stt.serve.engine import StreamBatcher


class Recorder:
    """A stand-in for StreamingTranscriber.accept_together: echoes (stream, first sample) and
    records each batch; the first batch waits for the test, so later chunks pile up."""

    def __init__(self, fail_on: set[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.release, self.started = threading.Event(), threading.Event()
        self.fail_on = fail_on

    def __call__(self, streams, chunks):
        if not self.batches:
            self.started.set()
            self.release.wait(10)
        self.batches.append(list(streams))
        if self.fail_on & set(streams):
            raise ValueError(f"bad stream in {sorted(self.fail_on & set(streams))}")
        return [(s, float(c[0])) for s, c in zip(streams, chunks, strict=True)]


def chunk(value: float) -> np.ndarray:
    return np.full(160, value, np.float32)


async def gather_while_held(batcher: StreamBatcher, recorder: Recorder, calls):
    """The first call alone in a batch that waits for the test; the others queued behind it."""
    (first, value), rest = calls[0], calls[1:]
    tasks = [asyncio.ensure_future(batcher.accept(first, chunk(value)))]
    while not recorder.started.is_set():
        await asyncio.sleep(0.01)
    tasks += [asyncio.ensure_future(batcher.accept(s, chunk(v))) for s, v in rest]
    while len(batcher._pending) < len(rest):  # every task has queued its chunk
        await asyncio.sleep(0.01)
    recorder.release.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_chunks_that_arrive_together_run_as_one_batch_and_each_gets_its_own_partial():
    recorder = Recorder()
    batcher = StreamBatcher(recorder)
    try:
        calls = [("s0", 0.0)] + [(f"s{i}", i / 100) for i in range(1, 40)]
        results = asyncio.run(gather_while_held(batcher, recorder, calls))
    finally:
        batcher.close()
    assert results == [(s, pytest.approx(v)) for s, v in calls]
    assert recorder.batches[0] == ["s0"]
    assert recorder.batches[1] == [f"s{i}" for i in range(1, 40)]  # all 39 in one batch


def test_a_stream_is_in_a_batch_once_and_its_chunks_keep_their_order():
    recorder = Recorder()
    batcher = StreamBatcher(recorder)
    try:
        calls = [("hold", 0.0), ("a", 0.1), ("a", 0.2), ("b", 0.3), ("a", 0.4)]
        results = asyncio.run(gather_while_held(batcher, recorder, calls))
    finally:
        batcher.close()
    assert [r[1] for r in results] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert recorder.batches[1:] == [["a", "b"], ["a"], ["a"]]


def test_a_failing_stream_gets_its_error_and_the_others_their_partials():
    recorder = Recorder(fail_on={"bad"})
    batcher = StreamBatcher(recorder)
    try:
        calls = [("hold", 0.0), ("x", 0.1), ("bad", 0.2), ("y", 0.3)]
        results = asyncio.run(gather_while_held(batcher, recorder, calls))
    finally:
        batcher.close()
    assert results[1] == ("x", pytest.approx(0.1)) and results[3] == ("y", pytest.approx(0.3))
    assert isinstance(results[2], ValueError) and "bad" in str(results[2])
    # the batch of three failed, then each ran alone
    assert recorder.batches[1:] == [["x", "bad", "y"], ["x"], ["bad"], ["y"]]


def test_a_closed_batcher_refuses_new_chunks():
    batcher = StreamBatcher(Recorder())
    batcher._accept_together.release.set()
    assert asyncio.run(batcher.accept("s", chunk(0.5))) == ("s", 0.5)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(batcher.accept("s", chunk(0.5)))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_batch_thread_runs_torch_on_stream_threads_threads(threads):
    import torch

    seen = []

    def accept_together(streams, chunks):
        seen.append(torch.get_num_threads())
        return list(streams)

    batcher = StreamBatcher(accept_together, threads=threads)
    try:
        assert asyncio.run(batcher.accept("s0", chunk(0.0))) == "s0"
    finally:
        batcher.close()
    assert seen == [threads]


def test_stream_threads_below_one_is_refused():
    from stt.errors import ConfigError
    from stt.serve.config import ServeConfig

    with pytest.raises(ConfigError, match="stream_threads must be >= 1, got 0"):
        ServeConfig(stream_threads=0)
