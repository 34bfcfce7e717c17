import numpy as np
import pytest

from stt.data.sampler import DurationBucketSampler
from stt.errors import ConfigError


def durations(n: int = 200, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).uniform(1.0, 15.0, size=n).round(2).tolist()


def test_every_index_appears_exactly_once_per_epoch():
    d = durations()
    sampler = DurationBucketSampler(d, max_batch_seconds=60.0, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        flat = [i for batch in sampler for i in batch]
        assert sorted(flat) == list(range(len(d)))


def test_padded_cost_of_every_batch_stays_within_the_cap():
    d = durations()
    sampler = DurationBucketSampler(d, max_batch_seconds=45.0, seed=3)
    for batch in sampler:
        assert max(d[i] for i in batch) * len(batch) <= 45.0


def test_max_batch_size_limits_the_number_of_utterances():
    sampler = DurationBucketSampler([1.0] * 50, max_batch_seconds=100.0, max_batch_size=8)
    assert max(len(b) for b in sampler) == 8


def test_batches_hold_similar_durations():
    d = durations(500)
    sampler = DurationBucketSampler(d, max_batch_seconds=60.0, seed=0)
    padded = sum(max(d[i] for i in b) * len(b) for b in sampler)
    assert padded < 1.15 * sum(d)  # sorting keeps padding small


def test_order_differs_between_epochs_and_repeats_for_the_same_seed():
    d = durations()

    def epoch_batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = DurationBucketSampler(d, max_batch_seconds=60.0, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(5, 0) == epoch_batches(5, 0)
    assert epoch_batches(5, 0) != epoch_batches(5, 1)
    assert epoch_batches(5, 0) != epoch_batches(6, 0)


def test_without_shuffle_batches_come_shortest_first():
    d = durations()
    batches = list(DurationBucketSampler(d, max_batch_seconds=60.0, shuffle=False))
    longest = [max(d[i] for i in b) for b in batches]
    assert longest == sorted(longest)


def test_replicas_get_equal_length_batch_lists_that_cover_every_index():
    d = durations(101)
    ranks = [DurationBucketSampler(d, 40.0, seed=2, num_replicas=2, rank=r) for r in (0, 1)]
    lists = [list(s) for s in ranks]
    assert len(lists[0]) == len(lists[1]) == len(ranks[0]) == len(ranks[1])
    seen = [i for batches in lists for b in batches for i in b]
    assert set(seen) == set(range(len(d)))
    # Only the padding batches (fewer than num_replicas) are repeated.
    assert len(seen) - len(d) <= max(len(b) for batches in lists for b in batches)


def test_replicas_pad_to_a_multiple_by_repeating_the_first_batches():
    d = [1.0] * 7  # 7 batches of one utterance each
    ranks = [DurationBucketSampler(d, 1.0, seed=0, num_replicas=3, rank=r) for r in range(3)]
    lists = [list(s) for s in ranks]
    assert [len(x) for x in lists] == [3, 3, 3]
    # Padded list is b0..b6, b0, b1: ranks 1 and 2 end with the first two batches of rank 0.
    assert lists[1][-1] == lists[0][0] and lists[2][-1] == lists[1][0]


def test_len_is_the_number_of_batches_yielded():
    sampler = DurationBucketSampler(durations(), max_batch_seconds=50.0, seed=4)
    sampler.set_epoch(3)
    assert len(sampler) == len(list(sampler))


def test_state_dict_after_k_batches_resumes_with_exactly_the_rest():
    d = durations()
    sampler = DurationBucketSampler(d, max_batch_seconds=60.0, seed=7)
    sampler.set_epoch(2)
    it = iter(sampler)
    first = [next(it) for _ in range(5)]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "position": 5}
    rest = list(it)

    fresh = DurationBucketSampler(d, max_batch_seconds=60.0, seed=7)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)  # the trainer's loop calls this; it must keep the resumed position
    assert list(fresh) == rest
    assert first + rest == fresh.batches()


def test_set_epoch_after_a_resumed_epoch_starts_the_next_epoch_from_its_start():
    d = durations()
    sampler = DurationBucketSampler(d, max_batch_seconds=60.0, seed=7)
    sampler.load_state_dict({"epoch": 1, "position": 3})
    sampler.set_epoch(1)
    list(sampler)
    sampler.set_epoch(2)
    assert sampler.state_dict() == {"epoch": 2, "position": 0}
    assert len(list(sampler)) == len(sampler)


def test_utterance_longer_than_the_cap_gets_a_batch_of_its_own():
    d = [2.0] * 10 + [30.0]
    batches = list(DurationBucketSampler(d, max_batch_seconds=10.0, seed=0))
    assert [10] in batches
    assert sorted(i for b in batches for i in b) == list(range(11))


def test_nonpositive_cap_is_a_config_error():
    with pytest.raises(ConfigError, match="max_batch_seconds"):
        DurationBucketSampler([1.0], max_batch_seconds=0)
