"""Probe accuracy against the simulator's known delays: one command, prints a table.

    .venv/bin/python bench/accuracy.py [--requests 256]

The probe runs as `smartbench probe` (its load in a probe process of its own) pinned to core 0,
the simulator to core 1, over loopback. Ground truth: the fixed simulator's TTFT 100 ms and
10 ms per token, 128 output tokens; the simulator's own timing error (from its /metrics) is
printed beside, since it bounds what any client can measure. Rows:

- one token per chunk, per-chunk usage: TTFT, ITL and TPOT p50/p99 error at c=1, 16, 64, 256;
- 4 tokens per chunk, no per-chunk usage (as TensorRT-LLM, SGLang, Dynamo), with a tokenizer:
  per-token ITL error; without a tokenizer: the per-chunk ITL and tokens per chunk;
- the probe's own CPU at c=1 (it sleeps between tokens).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import PIN, metric, metrics, probe, simulator

TTFT, ITL, OSL = 100.0, 10.0, 128


def word_tokenizer(folder: Path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))  # noqa: S106 - a token name, not a secret
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def err(step: dict[str, Any], metric_name: str, stat: str, truth: float) -> str:
    value = step[metric_name][stat]
    return "—" if value is None else f"{value - truth:+.2f}"


def flag(step: dict[str, Any]) -> str:
    quality = step["quality"]
    if not quality["client_bound"]:
        return "no"
    notes = [n for n in quality["client_notes"] if not n.startswith("probe CPU")]
    return "yes: " + "; ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=256, help="requests per step at c >= 16")
    args = parser.parse_args()
    print(
        f"cores: {os.cpu_count()}, pinning: {'taskset (probe core 0, simulator core 1)' if PIN else 'none'}"
    )
    header = ("case", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "TPOT p50", "basis", "client_bound")
    rows: list[tuple[str, ...]] = []

    with simulator("--preset", "fixed") as (port, _):
        for c in (1, 16, 64, 256):
            n = 16 if c == 1 else max(args.requests, c)
            step = probe(port, "--concurrency", str(c), "--requests", str(n), "--output-tokens", str(OSL))
            rows.append((f"1 tok/chunk, c={c}, {n} req", err(step, "ttft_ms", "p50", TTFT), err(step, "ttft_ms", "p99", TTFT),
                         err(step, "itl_ms", "p50", ITL), err(step, "itl_ms", "p99", ITL), err(step, "tpot_ms", "p50", ITL),
                         step["itl_basis"], flag(step)))  # fmt: skip
            if c == 1:
                cpu = step["quality"]["client_cpu_pct"]
        text = metrics(port)
        late = (metric(text, 'smartbench_sim_timing_error_us{quantile="0.5"}') / 1000,
                metric(text, 'smartbench_sim_timing_error_us{quantile="0.99"}') / 1000)  # fmt: skip

    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator("--preset", "fixed", "--tokens-per-chunk", "4", "--no-chunk-usage") as (port, _),
    ):
        tokenizer = word_tokenizer(Path(tmp))
        for label, extra in (("tokenizer", ("--tokenizer", tokenizer)), ("no tokenizer", ())):
            step = probe(
                port,
                "--concurrency",
                "16",
                "--requests",
                str(args.requests),
                "--output-tokens",
                str(OSL),
                *extra,
            )
            truth = ITL if step["itl_basis"] == "token" else 4 * ITL
            basis = step["itl_basis"] + (
                f", {step['tokens_per_chunk_mean']:.2f} tok/chunk" if step["tokens_per_chunk_mean"] else ""
            )
            rows.append((f"4 tok/chunk no chunk usage, {label}, c=16", err(step, "ttft_ms", "p50", TTFT),
                         err(step, "ttft_ms", "p99", TTFT), err(step, "itl_ms", "p50", truth), err(step, "itl_ms", "p99", truth),
                         err(step, "tpot_ms", "p50", ITL), basis, flag(step)))  # fmt: skip

    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    print("\nerrors in ms against the truth (TTFT 100, ITL 10 per token / 40 per 4-token chunk, TPOT 10)\n")
    for row in (header, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    print(f"\nsimulator timing error (its own lateness): p50 {late[0]:.3f} ms, p99 {late[1]:.3f} ms")
    print(f"probe CPU at c=1: {cpu:.1f} % of a core")


if __name__ == "__main__":
    main()
