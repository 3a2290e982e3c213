"""The simulator's prefix cache: the ground truth for every cache figure smartbench reports.

Modelled on the block-hashed prefix caches of vLLM and SGLang: a prompt's tokens are cut into
blocks of `block_tokens`; each full block is keyed by a hash of its tokens chained with the key
of the block before it, so a block matches only when everything before it matches too. A
request's cached tokens are its leading run of blocks already in the cache, less the last block
when the whole prompt matched (the last prompt token is always computed: the engine needs its
logits). Blocks are kept in least-recently-used order up to `capacity_tokens`.

A prompt's blocks enter the cache when the request arrives, so a prefix is shared from its
first request on (an engine that caches a block only once prefilled can miss between two
requests sent within one prefill; smartbench's expected hit rate makes the same assumption as
the simulator and says so). Counters are in tokens, as vLLM's `prefix_cache_queries_total` and
`prefix_cache_hits_total` are.

The simulator's tokens are words (app/simulator/openai.py): a chat message is four template
tokens (its role and separators) followed by the words of its content."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    def __init__(self, capacity_tokens: int, block_tokens: int = 16) -> None:
        self.block = max(1, block_tokens)
        self.capacity_blocks = max(0, capacity_tokens // self.block)
        self.blocks: OrderedDict[int, None] = OrderedDict()
        self.queries_tokens = 0
        self.hits_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.capacity_blocks > 0

    def admit(self, tokens: Sequence[str]) -> int:
        """Look the prompt up and cache its blocks; the number of its tokens found cached."""
        n = len(tokens)
        self.queries_tokens += n
        if not self.enabled or n == 0:
            return 0
        b = self.block
        blocks = self.blocks
        key = 0
        matched = 0
        matching = True
        for start in range(0, n - n % b, b):
            key = hash((key, *tokens[start : start + b]))
            if matching and key in blocks:
                blocks.move_to_end(key)
                matched += b
            else:
                matching = False
                blocks[key] = None
        while len(blocks) > self.capacity_blocks:
            blocks.popitem(last=False)
        cached = min(matched, (n - 1) // b * b)
        self.hits_tokens += cached
        return cached

    @property
    def hit_rate(self) -> float:
        return self.hits_tokens / self.queries_tokens if self.queries_tokens else 0.0
