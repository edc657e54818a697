"""mqar256 / mqar1024: multi-query associative recall, generated per the definition of Arora et
al., "Zoology: Measuring and Improving Recall in Efficient Language Models" (ICLR 2024).

Each sequence of length T over a vocabulary of V tokens:

* the vocabulary is split in two: keys are tokens 1 .. V/2 - 1, values V/2 .. V - 1;
* positions 0 .. 2N - 1 hold N key-value pairs, k1 v1 k2 v2 ..., with N distinct keys and N
  distinct values drawn uniformly;
* the rest, T - 2N positions, holds (T - 2N) / 2 query slots, at even offsets 2N + 2g from the
  start, g = 0, 1, ...; every key is queried once, in a random order, at a slot g drawn without
  replacement with probability proportional to (g + 1) ** (a - 1), a = `power_a` (0.01 in Zoology):
  a power law that puts most queries close after the pairs and a long tail far from them;
* every other position (the slot after each query, unused slots) holds a uniformly random token
  of the whole vocabulary, as noise;
* the target at a query is its key's value; every other target is -100, the ignore index of
  `F.cross_entropy`, so the loss and the accuracy count query positions only.

A key is always defined before its query, and the token after a query is noise, not the value:
the model must produce the value at the query position (Zoology scores exactly there).

Sequences are generated once per process (`lru_cache`) from a seed and the parameters, and kept
as int16 (41 MB for 20,000 sequences of 1,024 tokens); the train and test splits draw from
separate streams. The two suites' configs hold the lengths, pair counts and vocabulary.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from mmengine.registry import DATASETS
from torch.utils.data import Dataset

from ..errors import HarnessError
from ..tasks import IGNORE_INDEX
from .generated import check_int, check_split, evenly_spaced, stream

__all__ = ["MQAR", "generate", "gap_weights", "check_params", "GENERATOR_VERSION"]

GENERATOR_VERSION = 1      # bump when the sequences change for the same parameters
OWNER = "MQAR"


def gap_weights(slots: int, power_a: float) -> torch.Tensor:
    """Unnormalised probability of query slot g = 0 .. slots - 1: (g + 1) ** (power_a - 1)."""
    return torch.arange(1, slots + 1, dtype=torch.float64).pow(power_a - 1.0)


def _distinct(n: int, pool: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """(n, k) draws without replacement from range(pool), uniformly, per row."""
    return torch.rand(n, pool, generator=gen).argsort(dim=1)[:, :k]


@functools.lru_cache(maxsize=4)
def generate(split: str, num_examples: int, max_seq_len: int, num_kv_pairs: int, vocab_size: int,
             power_a: float, seed: int):
    """(tokens (n, T) int16, query positions (n, N) int16, query values (n, N) int16), once per process."""
    n, T, N, V = num_examples, max_seq_len, num_kv_pairs, vocab_size
    gen = stream("mqar", GENERATOR_VERSION, split, n, T, N, V, float(power_a), seed)
    half = V // 2
    keys = _distinct(n, half - 1, N, gen) + 1
    values = _distinct(n, V - half, N, gen) + half
    slots = (T - 2 * N) // 2
    gaps = torch.multinomial(gap_weights(slots, power_a).float().expand(n, slots), N, replacement=False,
                             generator=gen)
    tokens = torch.randint(0, V, (n, T), generator=gen)
    tokens[:, 0:2 * N:2], tokens[:, 1:2 * N:2] = keys, values
    where = 2 * N + 2 * gaps
    tokens.scatter_(1, where, keys)
    dtype = torch.int16 if V <= 2 ** 15 else torch.int32
    return tokens.to(dtype), where.to(torch.int16 if T <= 2 ** 15 else torch.int32), values.to(dtype)


def check_params(max_seq_len, num_kv_pairs, vocab_size, num_examples, power_a, seed) -> None:
    """One-line HarnessErrors for parameters no sequence can satisfy."""
    check_int(OWNER, "num_kv_pairs", num_kv_pairs, 1)
    check_int(OWNER, "vocab_size", vocab_size, 2 * num_kv_pairs + 2,
              why=f"{num_kv_pairs} distinct keys in 1..V/2-1 and values in V/2..V-1")
    check_int(OWNER, "max_seq_len", max_seq_len, 4 * num_kv_pairs,
              why=f"{num_kv_pairs} pairs take {2 * num_kv_pairs} tokens and their queries need "
                  f"{num_kv_pairs} slots of 2")
    check_int(OWNER, "num_examples", num_examples, 1)
    check_int(OWNER, "seed", seed, 0)
    if isinstance(power_a, bool) or not isinstance(power_a, (int, float)) or not (0 < power_a <= 1):
        raise HarnessError(f"{OWNER}: power_a must be a number in (0, 1] (query gaps ~ g ** (power_a - 1)), "
                           f"got {power_a!r}")


@DATASETS.register_module()
class MQAR(Dataset):
    """Items are dict(inputs=(T,) token ids, data_samples=(T,) targets: the value at each query
    position, IGNORE_INDEX everywhere else)."""

    def __init__(self, split: str = "train", max_seq_len: int = 256, num_kv_pairs: int = 16,
                 vocab_size: int = 256, num_examples: int = 1000, power_a: float = 0.01, seed: int = 0,
                 limit: Optional[int] = None):
        """limit: keep `limit` evenly spaced sequences (quick checks and tests)."""
        check_split(OWNER, split)
        check_params(max_seq_len, num_kv_pairs, vocab_size, num_examples, power_a, seed)
        self.split, self.max_seq_len, self.vocab_size = split, max_seq_len, vocab_size
        tokens, where, values = generate(split, num_examples, max_seq_len, num_kv_pairs, vocab_size,
                                         float(power_a), seed)
        keep = evenly_spaced(len(tokens), limit)
        if keep is not None:
            tokens, where, values = tokens[keep], where[keep], values[keep]
        self.tokens, self.query_positions, self.query_values = tokens, where, values
        self.metainfo = dict(max_seq_len=max_seq_len, num_kv_pairs=num_kv_pairs, vocab_size=vocab_size,
                             power_a=float(power_a), seed=seed, generator_version=GENERATOR_VERSION,
                             query_share=num_kv_pairs / max_seq_len, tokens="synthetic")

    @staticmethod
    def at_length(kwargs: dict, max_seq_len: int):
        """These dataset arguments at another length with the same share of pairs (at least 1, at
        most the vocabulary's (V - 2) // 2 distinct keys and values), and a note saying how many:
        a suite's data at another `bench --seq-len` (docs/DESIGN.md, "Embedded suites")."""
        pairs = kwargs["num_kv_pairs"] * max_seq_len // kwargs["max_seq_len"]
        pairs = max(1, min(pairs, (kwargs["vocab_size"] - 2) // 2))
        return dict(kwargs, max_seq_len=max_seq_len, num_kv_pairs=pairs), f" ({pairs} pairs)"

    def __len__(self) -> int:
        return len(self.tokens)

    def targets(self, i: int) -> torch.Tensor:
        y = torch.full((self.max_seq_len,), IGNORE_INDEX, dtype=torch.long)
        y[self.query_positions[i].long()] = self.query_values[i].long()
        return y

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=self.tokens[i].long(), data_samples=self.targets(i))
