"""Batches of similar-length utterances under a padded-seconds budget, resumable mid-epoch.

Sorting by duration before cutting batches keeps padding small; capping ``max duration x batch
size`` (the seconds of audio the padded batch really costs) rather than the batch size keeps
memory flat whether a batch holds forty short utterances or three long ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from stt.errors import ConfigError

# Last element of the sampler's seed: numpy's SeedSequence ignores trailing zeros, so without it
# (seed, epoch 0) would be the stream of plain `seed` -- and of the dataset's item (seed, 0, 0).
_RNG_TAG = 0x5A3B1E


def make_batches(
    durations: Sequence[float],
    max_batch_seconds: float,
    order: Sequence[int],
    max_batch_size: int | None = None,
) -> list[list[int]]:
    """Cut ``order`` (indices, shortest first) greedily into batches.

    A batch grows while ``max(durations) x size <= max_batch_seconds`` (and ``size <=
    max_batch_size``); an utterance longer than the cap on its own gets a batch of its own.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for i in order:
        d = float(durations[i])
        new_longest = max(longest, d)
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or new_longest * (len(current) + 1) > max_batch_seconds):
            batches.append(current)
            current, new_longest = [], d
        current.append(int(i))
        longest = new_longest
    if current:
        batches.append(current)
    return batches


class DurationBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Yields lists of dataset indices (use as a DataLoader's ``batch_sampler``).

    Per epoch: sort by duration (with a seeded multiplicative jitter of +-``jitter`` when
    shuffling, so batch contents change between epochs), cut greedily under
    ``max_batch_seconds`` of padded audio, shuffle the batch order with ``(seed, epoch)``. For
    ``num_replicas`` > 1 the batch list is padded with batches from its start to a multiple of
    ``num_replicas`` and rank ``r`` takes ``batches[r::num_replicas]``, so all ranks step
    together. Deterministic for ``(seed, epoch)``.

    Resuming: :attr:`position` counts the batches of this epoch already yielded; iteration
    starts there. ``state_dict()`` / ``load_state_dict()`` carry ``{"epoch", "position"}``.
    A DataLoader with workers draws batches ahead of the training loop (``prefetch_factor x
    num_workers``), so then :attr:`position` runs ahead of the steps taken: checkpoint
    ``{"epoch": e, "position": batches the loop actually consumed}`` instead.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        max_batch_size: int | None = None,
        jitter: float = 0.05,
    ):
        if not max_batch_seconds > 0:
            raise ConfigError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
        if not 0.0 <= jitter < 1.0:
            raise ConfigError(f"sampler jitter must lie in [0, 1), got {jitter}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_batch_seconds = float(max_batch_seconds)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.max_batch_size = max_batch_size
        self.jitter = float(jitter)
        self.epoch = 0
        self.position = 0
        self._resume_epoch: int | None = None  # set by load_state_dict, consumed by set_epoch
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch, unless ``load_state_dict`` resumed this epoch."""
        if self._resume_epoch is not None and epoch == self._resume_epoch:
            self._resume_epoch = None
            return
        self._resume_epoch = None
        self.epoch = int(epoch)
        self.position = 0

    def _all_batches(self) -> list[list[int]]:
        """Every rank's batches of :attr:`epoch`, padded to a multiple of ``num_replicas``."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        n = len(self.durations)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, _RNG_TAG])
            factor = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter, size=n)
            order = np.argsort(self.durations * factor, kind="stable")
        else:
            order = np.argsort(self.durations, kind="stable")
        batches = make_batches(self.durations, self.max_batch_seconds, order, self.max_batch_size)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if batches and len(batches) % self.num_replicas:
            pad = self.num_replicas - len(batches) % self.num_replicas
            batches = batches + [batches[i % len(batches)] for i in range(pad)]
        self._cache = (self.epoch, batches)
        return batches

    def batches(self) -> list[list[int]]:
        """This rank's whole batch list for the current epoch (ignores :attr:`position`)."""
        return self._all_batches()[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.batches()
        return self._iterate(mine, self.position)

    def _iterate(self, mine: list[list[int]], start: int) -> Iterator[list[int]]:
        for i in range(start, len(mine)):
            # Count the batch before handing it out: a state_dict() taken by the consumer after
            # receiving k batches then says k.
            self.position = i + 1
            yield list(mine[i])

    def __len__(self) -> int:
        """Batches per rank in the current epoch (the same on every rank).

        With shuffling, the jitter can change the count by a few batches between epochs.
        """
        return len(self._all_batches()) // self.num_replicas

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration of epoch ``state["epoch"]`` yields only the batches after
        the first ``state["position"]`` (a following ``set_epoch`` of that epoch keeps them)."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or position < 0:
            raise ValueError(f"invalid sampler state {state!r}")
        self.epoch = epoch
        self.position = position
        self._resume_epoch = epoch
