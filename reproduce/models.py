"""Policies: the tiny local LM, batched KV-cached sampling, log-probs, the SFT warm start.

Sequences are laid out as ``[left-padded prompt | completion]``; position ids
come from the attention mask so padding never shifts positions. Completions
end at the first stop token; later positions are padding and masked out.

Example
-------
>>> import torch
>>> from reproduce.tokenizer import char_tokenizer
>>> tok = char_tokenizer()
>>> model = build_tiny_lm(tok, n_layer=1, d_model=32, n_head=2)
>>> enc = tok(["What is 1+2?\\n"], return_tensors="pt")
>>> out = generate(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=5,
...                stop_ids=[tok.eos_token_id], pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0))
>>> out.tokens.shape[0], out.mask.dtype
(1, torch.bool)
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from .checkpoint import file_lock, fsync_path, sha256_file, temp_sibling
from .presets import TINY_LM_POSITIONS, WARM_START_FIELDS
from .tasks import ArithmeticTask
from .tokenizer import char_tokenizer


# ----------------------------------------------------------------------------- model construction
def build_tiny_lm(
    tokenizer,
    n_layer: int = 2,
    d_model: int = 128,
    n_head: int = 4,
    arch: str = "qwen2",
    max_positions: int = 256,
    seed: int = 0,
):
    """A randomly initialised small causal LM of the given architecture.

    ``arch="qwen2"`` is the paper's architecture (RoPE, GQA, SwiGLU) at tiny
    size; ``"gpt2"`` is the classic alternative. Dropout is off so sampling
    and training see the same policy.

    Examples
    --------
    >>> from reproduce.tokenizer import char_tokenizer
    >>> m = build_tiny_lm(char_tokenizer(), n_layer=1, d_model=32, n_head=2)
    >>> m.config.model_type
    'qwen2'
    """
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "qwen2":
        config = Qwen2Config(
            hidden_size=d_model,
            intermediate_size=4 * d_model,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=max(1, n_head // 2),
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
            attention_dropout=0.0,
            **ids,
        )
    elif arch == "gpt2":
        config = GPT2Config(
            n_embd=d_model,
            n_layer=n_layer,
            n_head=n_head,
            n_positions=max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
    else:
        raise ValueError(f"arch must be 'qwen2' or 'gpt2', got {arch!r}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def load_tokenizer(path):
    """``AutoTokenizer``, except that a saved generic fast tokenizer is loaded as such.

    transformers 5 picks the tokenizer class from the model's ``model_type``
    when ``tokenizer_class`` is generic, which would wrap our character
    vocabulary in Qwen2's byte-level pre-tokenizer next to a Qwen2 config.
    """
    config = Path(path) / "tokenizer_config.json"
    if config.is_file() and json.loads(config.read_text()).get("tokenizer_class") in _GENERIC_TOKENIZERS:
        return PreTrainedTokenizerFast.from_pretrained(path, padding_side="left")
    return AutoTokenizer.from_pretrained(path, padding_side="left")


_GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_pretrained(model: str, dtype: torch.dtype = torch.float32):
    """Load a pretrained causal LM and its tokenizer from a local path or hub cache.

    Fails early, naming the path and what to pass, when the weights are absent
    (this project never downloads weights).
    """
    try:
        tokenizer = load_tokenizer(model)
        policy = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, attn_implementation="sdpa")
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"could not load model weights/tokenizer from {model!r} ({err.__class__.__name__}). "
            "Pass --model /path/to/Qwen2.5-1.5B-Instruct (a directory with config.json, *.safetensors and "
            "tokenizer files), or a hub id already in the local Hugging Face cache."
        ) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return policy, tokenizer


def stop_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end a completion: the tokenizer's eos plus the generation config's."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
    return sorted(i for i in ids if i is not None)


# ----------------------------------------------------------------------------- sampling and log-probs
def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _cache_arg(model) -> str:
    # transformers >= 5.2x names the KV cache ``cache``; older releases ``past_key_values``.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@dataclass
class Generation:
    """Completion tokens ``(n, L)`` (padded after the stop token), their mask (stop token included),
    and the sampling policy's log-probs of the tokens ``(n, L)`` (0 where masked)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor


@torch.no_grad()
def generate(
    model,
    input_ids,
    attention_mask,
    max_new_tokens,
    stop_ids,
    pad_id,
    generator=None,
    temperature: float = 1.0,
    do_sample: bool = True,
) -> Generation:
    """Batched sampling with a KV cache from left-padded prompts.

    Draws use ``generator`` (a ``torch.Generator`` on the model's device),
    so a run is reproducible from its state alone. Stops early once every
    row has emitted a stop token.
    """
    n = input_ids.shape[0]
    device = input_ids.device
    stop = torch.tensor(stop_ids, device=device)
    cache_arg = _cache_arg(model)
    mask = attention_mask.long()
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=_positions(mask), use_cache=True)
    pos = _positions(mask)[:, -1:]
    tokens = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((n, max_new_tokens), dtype=torch.float32, device=device)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    length = torch.zeros(n, dtype=torch.long, device=device)
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        if do_sample:
            logp = torch.log_softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
        else:
            logp = torch.log_softmax(logits, dim=-1)
            nxt = logits.argmax(-1)
        tokens[:, t] = torch.where(alive, nxt, pad_id)
        logprobs[:, t] = torch.where(alive, logp.gather(1, nxt[:, None]).squeeze(1), 0.0)
        length += alive.long()
        alive &= ~torch.isin(nxt, stop)
        if not alive.any() or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(n, 1, dtype=mask.dtype, device=device)], dim=1)
        pos = pos + 1
        cache = {cache_arg: out[cache_arg]}
        out = model(input_ids=tokens[:, t : t + 1], attention_mask=mask, position_ids=pos, use_cache=True, **cache)
    width = int(length.max()) if n else 0
    steps = torch.arange(width, device=device)
    return Generation(tokens=tokens[:, :width], mask=steps[None, :] < length[:, None], logprobs=logprobs[:, :width])


def completion_logprobs(
    model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probabilities ``(n, L)`` of the completion tokens under ``model`` at ``temperature`` (grad-enabled).

    The policy being optimised is the sampling distribution, ``softmax(logits / temperature)``.
    """
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    mask = torch.cat([prompt_mask.long(), completion_mask.long()], dim=1)
    p, length = prompt_ids.shape[1], completion_ids.shape[1]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask)).logits
    logits = logits[:, p - 1 : p - 1 + length].float() / temperature
    picked = logits.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


# ----------------------------------------------------------------------------- supervised warm start
def sft_batch(tokenizer, rows: list[dict]):
    """Tokenise ``prompt + solution + eos`` rows; loss only on solution tokens (and eos)."""
    prompts = tokenizer([r["prompt"] for r in rows])["input_ids"]
    targets = tokenizer([r["solution"] for r in rows], add_special_tokens=False)["input_ids"]
    seqs = [p + t + [tokenizer.eos_token_id] for p, t in zip(prompts, targets)]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, s) in enumerate(zip(prompts, seqs)):
        # Left padding, as in RL, so the model sees the same layout in both phases.
        ids[i, width - len(s) :] = torch.tensor(s)
        attn[i, width - len(s) :] = 1
        labels[i, width - len(s) + len(p) :] = torch.tensor(s[len(p) :])
    return ids, attn, labels


def supervised_finetune(
    model, tokenizer, task: ArithmeticTask, steps: int, batch_size: int, lr: float, seed: int = 0, log=None
) -> list[float]:
    """SFT on fresh problems from the task's "sft" stream (AdamW, warmup then cosine). Returns losses."""
    rows = task.sample(steps * batch_size, stream="sft")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    )
    torch.manual_seed(seed)
    model.train()
    losses = []
    for step in range(steps):
        ids, attn, labels = sft_batch(tokenizer, rows[step * batch_size : (step + 1) * batch_size])
        loss = model(input_ids=ids, attention_mask=attn, position_ids=_positions(attn), labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(f"sft step {step}/{steps} loss {loss.item():.4f}")
    model.zero_grad(set_to_none=True)  # a fresh model and one loaded from the cache must be the same object state
    model.eval()
    return losses


def warm_start(cfg, log=print):
    """The warm-started tiny LM and tokenizer for ``cfg``, from cache when present.

    The cache entry is ``<cache>/warmstart-<cfg.warm_start_key()>``: ``save_pretrained`` outputs and
    ``meta.json`` (config fields, hash, SFT wall time, final loss and the SHA-256 of every file). Runs
    sharing a cache take a per-key file lock, so the first builds the entry and the others wait and load it.
    An entry is built in a uniquely named folder, fsynced, and renamed into place whole, so a half-written
    entry is never read; an entry whose files do not match their digests is rebuilt.
    """
    key = cfg.warm_start_key()
    root = cfg.resolved_cache_dir()
    final = root / f"warmstart-{key}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise NotADirectoryError(f"cache_dir {root} is not a directory; pass --cache-dir DIR") from err
    # One build per key: concurrent runs wait here, then find the entry (the lock dies with its process).
    with file_lock(root / f".warmstart-{key}.lock", log=log):
        cached = _load_warm_start(final, log)
        if cached is not None:
            return cached
        tokenizer = char_tokenizer()
        model = build_tiny_lm(tokenizer, cfg.n_layer, cfg.d_model, cfg.n_head, cfg.arch,
                              max_positions=TINY_LM_POSITIONS, seed=cfg.task_seed)
        task = ArithmeticTask(cfg.task_seed, cfg.min_terms, cfg.max_terms, cfg.max_value, cfg.sft_direct_rate)
        start = time.perf_counter()
        losses = supervised_finetune(
            model, tokenizer, task, cfg.sft_steps, cfg.sft_batch_size, cfg.sft_lr, seed=cfg.task_seed, log=log
        )
        meta = {
            "key": key,
            "fields": {k: getattr(cfg, k) for k in WARM_START_FIELDS},
            "sft_seconds": time.perf_counter() - start,
            "final_loss": losses[-1] if losses else None,
            "torch_threads": torch.get_num_threads(),
        }
        for stale in root.glob(f".warmstart-{key}.*.tmp"):  # left by a killed build; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = temp_sibling(final)
        tmp.mkdir()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta["sha256"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        for p in tmp.iterdir():
            fsync_path(p)
        fsync_path(tmp)
        shutil.rmtree(final, ignore_errors=True)  # a corrupt entry, refused above
        tmp.rename(final)
        fsync_path(root)
    log(f"warm start cached at {final} ({meta['sft_seconds']:.1f} s)")
    return model, tokenizer


def _load_warm_start(final: Path, log):
    """The cached ``(model, tokenizer)`` in ``final``, or None when absent or damaged (then it is rebuilt)."""
    if not (final / "meta.json").is_file():
        return None
    try:
        digests = json.loads((final / "meta.json").read_text()).get("sha256", {})
        # Entries from before digests were recorded have none to check; they were renamed into place whole.
        bad = [name for name, digest in digests.items() if sha256_file(final / name) != digest]
        if bad:
            raise ValueError(f"{bad} do not match their SHA-256 in meta.json")
        model = AutoModelForCausalLM.from_pretrained(final, attn_implementation="sdpa")
        return model.eval(), load_tokenizer(final)
    except (OSError, ValueError, AttributeError) as err:
        log(f"warm-start cache entry {final} is damaged ({err}); rebuilding it")
        return None
