"""What each request of a workload carries (app/workloads.py): its messages, the output it asks
for, its session and turn, when a trace wants it sent, and how many of its prompt tokens the
workload's sharing lets a prefix cache serve. Seeded: the same seed makes the same traffic.

- synthetic and long_context: one unique user message per request (a unique head, so no two
  prompts share a cacheable prefix by accident);
- shared_prefix: a system message holding the group's prefix (the same text in every request of
  the group, in every process), then a unique user message;
- multi_turn and dataset sessions: a `Session` sends turn after turn, each with the whole
  conversation so far, the server's own answers included;
- trace: the trace's requests at their times; a Mooncake request's prompt is its hash ids'
  512-token blocks, each block's text a function of its id, so equal ids send equal prefixes;
- dataset: a conversation's first user turn (after its system turn, if any), drawn with the seed.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

from app.datasets import Conversation, DatasetContent, TraceRequest
from app.probe.prompts import Messages, PromptFactory
from app.workloads import MAX_THINK_S, TRACE_BLOCK_TOKENS, Dist, WorkloadSpec

BLOCK_TEXTS = 4096  # trace blocks' texts kept for reuse (a popular block is made once)
PREFIX_WORDS = 8_000_000  # shared prefixes' texts kept for reuse, in words at most


@dataclass(slots=True)
class Planned:
    messages: Messages
    output_tokens: int
    input_tokens: int | None = None  # what the workload asked for, where it sizes the prompt
    expected_cached: int | None = None
    session: int | None = None
    turn: int | None = None


@dataclass
class Session:
    """One conversation: its turns go out one at a time, each after the previous answer."""

    id: int
    turns: int
    system: str | None
    users: list[str]  # each turn's user text
    outputs: list[int]  # each turn's output tokens
    think_s: list[float]  # before each turn after the first
    history: Messages = field(default_factory=list)
    last_prompt_tokens: int | None = None  # the previous turn's prompt, as the server counted it
    sent: int = 0

    def next(self) -> Planned | None:
        if self.sent >= self.turns:
            return None
        index = self.sent
        self.sent += 1
        messages: Messages = [("system", self.system)] if self.system else []
        messages = [*messages, *self.history, ("user", self.users[index])]
        return Planned(
            messages,
            self.outputs[index],
            expected_cached=self.last_prompt_tokens if index else None,
            session=self.id,
            turn=index + 1,
        )

    def answered(self, planned: Planned, answer: str | None, prompt_tokens: int | None) -> None:
        self.history += [planned.messages[-1], ("assistant", answer or "")]
        self.last_prompt_tokens = prompt_tokens

    def think(self) -> float:
        """Seconds to wait before the next turn (at most MAX_THINK_S)."""
        return min(MAX_THINK_S, self.think_s[self.sent - 1]) if 0 < self.sent <= len(self.think_s) else 0.0


class Traffic:
    """The requests one prober sends for a workload. `seed`: this process's randomness (a
    shard's differs); shared texts (prefixes, trace blocks, system prompts) follow the
    workload's own seed, so every shard sends them alike."""

    def __init__(
        self,
        spec: WorkloadSpec,
        *,
        input: Dist,
        output: Dist,
        prompts: PromptFactory,
        seed: int,
        content: DatasetContent | None = None,
    ) -> None:
        self.spec = spec
        self.input = spec.input or input
        self.output = spec.output or output
        self.prompts = prompts
        self.rng = random.Random(seed)
        self.content = content
        self._seen_groups: set[int] = set()
        self._seen_blocks: set[int] = set()
        self._prefixes: OrderedDict[int, str] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._round_robin = 0

    # -- independent requests -----------------------------------------------------------------------

    def request(self, seq: int, context_tokens: int | None = None) -> Planned:
        """The next request of a workload whose requests do not wait on each other."""
        kind = self.spec.kind
        if kind == "shared_prefix":
            return self._shared(seq)
        if kind == "dataset":
            return self._from_dataset(seq)
        isl = context_tokens if context_tokens is not None else self.input.tokens(self.rng)
        osl = self.output.tokens(self.rng)
        return Planned([("user", self.prompts.prompt(isl, seq))], osl, input_tokens=isl)

    def _shared(self, seq: int) -> Planned:
        spec = self.spec
        groups = int(spec.groups or 1)
        if spec.group_order == "round_robin":
            group = self._round_robin % groups
            self._round_robin += 1
        else:
            group = self.rng.randrange(groups)
        prefix_tokens = int(spec.prefix_tokens or 1)
        prefix = self._prefixes.get(group)
        if prefix is None:
            prefix = self.prompts.shared(prefix_tokens, f"prefix:{spec.seed}:{group}")
            self._prefixes[group] = prefix
            if len(self._prefixes) > max(1, PREFIX_WORDS // prefix_tokens):
                self._prefixes.popitem(last=False)
        expected = prefix_tokens if group in self._seen_groups else 0
        self._seen_groups.add(group)
        suffix = self.input.tokens(self.rng)
        return Planned(
            [("system", prefix), ("user", self.prompts.prompt(suffix, seq))],
            self.output.tokens(self.rng),
            input_tokens=prefix_tokens + suffix,
            expected_cached=expected,
        )

    def _from_dataset(self, seq: int) -> Planned:
        assert self.content is not None
        conv = self.rng.choice(self.content.conversations)
        messages: Messages = []
        answer: str | None = None
        for i, turn in enumerate(conv.turns):
            if turn.role == "system" and not messages:
                messages.append(("system", turn.text))
            elif turn.role == "user":
                messages.append(("user", turn.text))
                later = conv.turns[i + 1] if i + 1 < len(conv.turns) else None
                answer = later.text if later is not None and later.role == "assistant" else None
                break
        return Planned(messages, self._answer_tokens(answer))

    def _answer_tokens(self, answer: str | None) -> int:
        """The dataset's own answer length in the endpoint's tokens, or the workload's output."""
        if self.spec.output is None and answer:
            return self.prompts.count(answer)
        return self.output.tokens(self.rng)

    # -- sessions ---------------------------------------------------------------------------------

    def session(self, seq_base: int) -> Session:
        """A new conversation (multi_turn, or a dataset's conversation replayed whole)."""
        ident = seq_base
        spec = self.spec
        if spec.kind == "dataset":
            assert self.content is not None
            return self._dataset_session(ident, self.rng.choice(self.content.conversations))
        turns = max(1, spec.turn_dist.tokens(self.rng))
        system = None
        if spec.system_tokens:
            system = self.prompts.shared(spec.system_tokens, f"system:{spec.seed}")
        users = [self.prompts.part(self.input.tokens(self.rng), ident * 1000 + t) for t in range(turns)]
        outputs = [self.output.tokens(self.rng) for _ in range(turns)]
        think = [spec.think_dist.sample(self.rng) for _ in range(turns - 1)]
        return Session(ident, turns, system, users, outputs, think)

    def _dataset_session(self, ident: int, conv: Conversation) -> Session:
        system = next((t.text for t in conv.turns[:1] if t.role == "system"), None)
        users: list[str] = []
        outputs: list[int] = []
        for i, turn in enumerate(conv.turns):
            if turn.role != "user":
                continue
            users.append(turn.text)
            later = conv.turns[i + 1] if i + 1 < len(conv.turns) else None
            outputs.append(
                self._answer_tokens(later.text if later is not None and later.role == "assistant" else None)
            )
        think = [self.spec.think_dist.sample(self.rng) for _ in range(len(users) - 1)]
        return Session(ident, len(users), system, users, outputs, think)

    # -- traces -----------------------------------------------------------------------------------

    def trace(
        self, limit: int | None, horizon_s: float | None, scale: float
    ) -> list[tuple[float, TraceRequest]]:
        """The trace's requests due within the bounds, with their send offsets in seconds at
        `scale` (2: twice as fast as recorded)."""
        assert self.content is not None
        out: list[tuple[float, TraceRequest]] = []
        for request in self.content.requests:
            at = request.at_ms / 1000.0 / scale
            if (limit is not None and len(out) >= limit) or (horizon_s is not None and at > horizon_s):
                break
            out.append((at, request))
        return out

    def traced(self, request: TraceRequest, seq: int) -> Planned:
        """A trace request's prompt: its blocks' texts (shared by id), or a unique prompt."""
        if not request.hash_ids:
            return Planned(
                [("user", self.prompts.prompt(request.input_tokens, seq))],
                request.output_tokens,
                input_tokens=request.input_tokens,
            )
        parts: list[str] = []
        left = request.input_tokens
        leading = True
        expected = 0
        for block in request.hash_ids:
            if left <= 0:
                break
            size = min(TRACE_BLOCK_TOKENS, left)
            parts.append(self._block(block, size))
            if leading and block in self._seen_blocks:
                expected += size
            else:
                leading = False
            self._seen_blocks.add(block)
            left -= size
        return Planned(
            [("user", " ".join(parts))],
            request.output_tokens,
            input_tokens=request.input_tokens,
            expected_cached=expected,
        )

    def _block(self, block: int, size: int) -> str:
        key = (block, size)
        text = self._blocks.get(key)
        if text is None:
            if size < TRACE_BLOCK_TOKENS:  # a partial block is the start of the whole one
                whole = self._block(block, TRACE_BLOCK_TOKENS).split(" ")
                text = " ".join(whole[: self.prompts.words_in(size)])
            else:
                text = self.prompts.shared(size, f"block:{self.spec.seed}:{block}")
            self._blocks[key] = text
            if len(self._blocks) > BLOCK_TEXTS:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return text
