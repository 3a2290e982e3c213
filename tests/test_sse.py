"""SSE parser: any split of a valid stream parses to the same events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.probe.sse import SSEParser

payload = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    events = draw(st.lists(st.lists(payload, min_size=1, max_size=3), min_size=1, max_size=8))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    parts: list[str] = []
    expected: list[bytes] = []
    for lines in events:
        if draw(st.booleans()):
            parts.append(": comment" + newline)
        parts.extend(f"data: {line}{newline}" for line in lines)
        parts.append(newline)
        expected.append("\n".join(lines).encode())
    return "".join(parts).encode(), expected


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_parses_the_same(stream: tuple[bytes, list[bytes]], cuts: list[int]) -> None:
    raw, expected = stream
    points = sorted({c % (len(raw) + 1) for c in cuts})
    parser = SSEParser()
    events: list[bytes] = []
    last = 0
    for point in [*points, len(raw)]:
        events += parser.feed(raw[last:point])
        last = point
    events += parser.close()
    assert events == expected
