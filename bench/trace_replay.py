"""Trace replay benchmark: one command, prints its figures.

    .venv/bin/python bench/trace_replay.py [--requests 10000] [--scale 100]

A Mooncake-format trace of 10,000 requests (arrivals at the published Mooncake rate, 6.6 per
second, so 25 minutes as recorded; prompts of 1-4 512-token blocks, most sharing a first block,
as Mooncake's do; 16 output tokens) is written to a file and replayed at 100x (about 650
requests per second) by `smartbench probe --workload trace`, pinned to one core, against a
zero-delay simulator pinned to the other. Figures: requests sent and completed, prompt lengths
against the file's (the simulator counts words: each prompt is its blocks' words plus the four
tokens of the chat template), the share of prompts whose shared first block arrived as the same
text, and the dispatch lag (actual send minus scheduled send) p50/p99/max.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.datasets import DatasetContent, TraceRequest, to_file
from app.workloads import TRACE_BLOCK_TOKENS
from bench.loadgen import PY, ROOT, pinned, simulator


def trace(count: int, seed: int = 7) -> DatasetContent:
    rng = random.Random(seed)  # noqa: S311 - a generated trace, not a secret
    at = 0.0
    next_id = 16
    out = []
    for _ in range(count):
        at += rng.expovariate(23_608 / 3_600_000)
        blocks = rng.choice((1, 1, 2, 2, 3, 4))
        ids = [rng.randrange(16) if rng.random() < 0.8 else next_id]
        next_id += 1
        while len(ids) < blocks:
            ids.append(next_id)
            next_id += 1
        isl = (blocks - 1) * TRACE_BLOCK_TOKENS + rng.randint(64, TRACE_BLOCK_TOKENS)
        out.append(TraceRequest(at_ms=round(at), input_tokens=isl, output_tokens=16, hash_ids=ids))
    first = out[0].at_ms
    return DatasetContent(
        format="mooncake", requests=[r.model_copy(update={"at_ms": r.at_ms - first}) for r in out]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--scale", type=float, default=100.0)
    args = parser.parse_args()
    content = trace(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        path.write_bytes(to_file(content))
        with simulator("--preset", "zero", "--prefix-cache-tokens", "0") as (port, _):
            cmd = [PY, "-m", "app.cli", "probe", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "sim",
                   "--workload", "trace", "--dataset", str(path), "--time-scale", f"{args.scale:g}",
                   "--requests", str(args.requests), "--json", "-"]  # fmt: skip
            out = subprocess.run(
                pinned(0, cmd), cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
            )
    if not out.stdout:
        raise SystemExit(out.stderr[-3000:])
    step = json.loads(out.stdout)["steps"][0]
    lag = step["workload"]["dispatch_lag_ms"]
    span = content.requests[-1].at_ms / 1000.0
    rows = [
        ("trace", f"{args.requests} requests over {span:,.0f} s as recorded; replayed at {args.scale:g}x "
                  f"({args.requests / span * args.scale:,.0f} requests/s)"),
        ("sent / completed", f"{step['requests']['sent']} / {step['requests']['completed']}"),
        ("prompt tokens, mean (file + 4 template tokens)",
         f"{step['input_tokens']['mean']:.1f} (file {sum(r.input_tokens for r in content.requests) / len(content.requests):.1f})"),
        ("achieved rate", f"{step['request_rate']:,.1f} requests/s"),
        ("dispatch lag", f"p50 {lag['p50']:.3f} ms, p99 {lag['p99']:.3f} ms, max {lag['max']:.2f} ms"),
        ("client_bound", f"{step['quality']['client_bound']} ({'; '.join(step['quality']['client_notes'])})"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
