"""Hugging Face `transformers serve` as the real OpenAI-compatible server nobody here wrote: a
tiny randomly initialised Llama, built on the CPU from a config (no download), served on
127.0.0.1. Needs the `real-server` extra (transformers[serving] and the CPU build of torch)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.simulator.process import free_port
from app.vocab import WORDS as VOCAB

WORDS = list(VOCAB[:40])  # the words the probe builds its prompts from

BUILD = r"""
import sys, torch
from pathlib import Path
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out, words = Path(sys.argv[1]), sys.argv[2:]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator([" ".join(words)] * 20, trainer)
fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}assistant: {% endif %}")
fast.save_pretrained(out)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                     bos_token_id=1, eos_token_id=2)
LlamaForCausalLM(config).save_pretrained(out)
"""


def missing() -> str | None:
    """None when the real server can run here, else why not."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        return f"the real-server extra is not installed ({exc.name}): pip install -e '.[test,real-server]'"
    if shutil.which("transformers", path=str(Path(sys.executable).parent)) is None:
        return "the `transformers` command is missing: pip install 'transformers[serving]'"
    return None


def quiet_env() -> dict[str, str]:
    # One thread for torch: the server must leave a core to the probe on a 2-core machine.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip


def build_tiny_model(out: Path) -> Path:
    subprocess.run([sys.executable, "-c", BUILD, str(out), *WORDS], check=True, env=quiet_env(), timeout=300,
                   capture_output=True)  # fmt: skip
    return out


@contextmanager
def transformers_serve(model_dir: Path, timeout: float = 180.0) -> Iterator[str]:
    """`transformers serve MODEL_DIR` on a free port; yields its base URL (…/v1)."""
    port = free_port()
    command = str(Path(sys.executable).parent / "transformers")
    log = model_dir.parent / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [command, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=sink, stderr=subprocess.STDOUT, env=quiet_env(),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"transformers serve exited with {proc.returncode}: {log.read_text()[-2000:]}"
                    )
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"transformers serve did not answer within {timeout:g} s")
                time.sleep(0.25)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
