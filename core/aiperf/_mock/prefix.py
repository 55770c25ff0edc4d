"""What a server's prefix cache would hold: which prompt prefixes the mock has seen before.

Prompts are cut into blocks of ``--prefix-block-size`` words (the mock's tokens), and each
full block is keyed by a hash of itself and every block before it, as vLLM keys its KV-cache
blocks. A prompt's cached tokens are its leading blocks whose key was seen in an earlier
prompt: two prompts share cached blocks only when they share the whole prefix up to them.
The cache never evicts, up to ``capacity`` keys; then it starts again empty.
"""

from __future__ import annotations


class PrefixCache:
    def __init__(self, block_size: int, capacity: int = 4_000_000) -> None:
        self.block_size = block_size
        self.capacity = capacity
        self.seen: set[int] = set()
        #: times the cache was full and started again empty.
        self.flushes = 0

    def observe(self, text: str) -> int:
        """The tokens of ``text`` a prefix cache holds from earlier prompts; remembers ``text``."""
        size = self.block_size
        words = text.split()
        key = 0
        hits = 0
        missed = False
        for start in range(0, len(words) - size + 1, size):
            key = hash((key, *words[start : start + size]))
            if not missed and key in self.seen:
                hits += 1
                continue
            missed = True
            if len(self.seen) >= self.capacity:
                self.seen.clear()
                self.flushes += 1
            self.seen.add(key)
        return hits * size

    def clear(self) -> None:
        self.seen.clear()
