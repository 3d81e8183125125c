#!/usr/bin/python3
"""Peer baseline: plain PyTorch eager Mixtral/OLMoE generation WITH a KV cache, one prompt at a time.

This is what a researcher would write (or get from `transformers` in eager mode) to serve a
checkpoint without an inference engine, and what MoeServe's speed is compared against on the same
machine. It follows the Hugging Face eager modules step by step:

  - KV cache: per layer, keys/values (after RoPE, before repeat_kv) grown with `torch.cat` along the
    sequence, as HF's DynamicCache does;
  - attention: explicit `matmul` + fp32 softmax (HF's `eager_attention_forward`; torch 1.13 has no
    `scaled_dot_product_attention`);
  - MoE: fp32 router softmax, top-k, renormalise per model type, then the expert loop of
    MixtralSparseMoeBlock (`one_hot` mask, `torch.where`, `index_add_`);
  - greedy decoding under `torch.inference_mode()`.

Checkpoint reading and config handling come from scripts/reference/hf_reference.py (imported, not
copied). Prints ONE JSON object with timings and the first prompt's first 16 greedy ids.

  /usr/bin/python3 scripts/peer/eager_generate.py --model models/moeserve-tiny-random \
      --prompt-tokens 64 --num-prompts 8 --max-tokens 64 [--dtype bfloat16] [--threads N]
  /usr/bin/python3 scripts/peer/eager_generate.py --model DIR --prompts-file prompts.json --max-tokens 32
"""

import argparse
import ctypes
import json
import os
import random
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Reuse the reference's safetensors reader and config handling (load_model) and its RoPE table.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "reference"))
sys.dont_write_bytecode = True  # leave no __pycache__ in scripts/reference (another owner's folder)
import hf_reference as ref  # noqa: E402

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# ----------------------------------------------------------------------------------------------
# weights in the compute dtype
# ----------------------------------------------------------------------------------------------

@dataclass
class Layer:
    input_norm: torch.Tensor  # [H]
    post_norm: torch.Tensor  # [H]
    q: torch.Tensor  # [heads*hd, H]  (nn.Linear layout: [out, in])
    k: torch.Tensor  # [kv_heads*hd, H]
    v: torch.Tensor  # [kv_heads*hd, H]
    o: torch.Tensor  # [H, heads*hd]
    q_norm: torch.Tensor  # [heads*hd] (OLMoE) or None
    k_norm: torch.Tensor  # [kv_heads*hd] (OLMoE) or None
    router: torch.Tensor  # [E, H]
    experts: list  # E tuples (gate [I, H], up [I, H], down [H, I])


@dataclass
class EagerModel:
    spec: ref.Model  # config, sizes and the float32 weights as read
    dtype: torch.dtype
    embed: torch.Tensor  # [V, H]
    layers: list  # [Layer]
    final_norm: torch.Tensor  # [H]
    lm_head: torch.Tensor  # [V, H]
    renormalize: bool  # renormalise the top-k router weights to sum 1


def load(model_dir, dtype):
    """Read the checkpoint with the reference loader (float32), then cast every tensor to `dtype`
    once, as `from_pretrained(..., torch_dtype=dtype)` would."""
    spec = ref.load_model(model_dir)

    def w(name):
        return spec.w(name).to(dtype).contiguous()

    layers = []
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        a = p + "self_attn."
        olmoe = spec.arch == "olmoe"
        layers.append(Layer(
            input_norm=w(p + "input_layernorm.weight"),
            post_norm=w(p + "post_attention_layernorm.weight"),
            q=w(a + "q_proj.weight"), k=w(a + "k_proj.weight"),
            v=w(a + "v_proj.weight"), o=w(a + "o_proj.weight"),
            q_norm=w(a + "q_norm.weight") if olmoe else None,
            k_norm=w(a + "k_norm.weight") if olmoe else None,
            router=w(f"{spec.moe_prefix(i)}.gate.weight"),
            experts=[tuple(t.to(dtype).contiguous() for t in spec.expert_weights(i, e))
                     for e in range(spec.experts)],
        ))
    # Mixtral always renormalises the top-k weights; OLMoE only with norm_topk_prob.
    renorm = spec.arch == "mixtral" or bool(spec.config.get("norm_topk_prob", False))
    return EagerModel(spec=spec, dtype=dtype, embed=w("model.embed_tokens.weight"), layers=layers,
                      final_norm=w("model.norm.weight"),
                      lm_head=spec.lm_head().to(dtype).contiguous(), renormalize=renorm)


# ----------------------------------------------------------------------------------------------
# KV cache (HF DynamicCache: one growing tensor pair per layer)
# ----------------------------------------------------------------------------------------------

class KVCache:
    def __init__(self, n_layers):
        self.keys = [None] * n_layers  # each [kv_heads, S, hd]
        self.values = [None] * n_layers

    def length(self):
        return 0 if self.keys[0] is None else self.keys[0].shape[1]

    def update(self, layer, k, v):
        """Append k, v ([kv_heads, T, hd]) and return the whole cached sequence [kv_heads, S, hd].
        torch.cat re-allocates every step, which is exactly DynamicCache's cost profile."""
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=1)
            self.values[layer] = torch.cat([self.values[layer], v], dim=1)
        return self.keys[layer], self.values[layer]


# ----------------------------------------------------------------------------------------------
# model pieces (HF eager modules, batch of one sequence, batch dimension dropped)
# ----------------------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    """MixtralRMSNorm: statistics in fp32, cast back to the input dtype, then scale (so bf16 stays
    bf16 between modules, as in HF). x: [T, D] -> [T, D]."""
    dtype = x.dtype
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(dtype)


def rotate_half(x):
    """[..., d]: (x1, x2) -> (-x2, x1) with halves split at d/2 (HF's rotate_half)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_tables(model, n_positions):
    """cos, sin [n_positions, hd] in the compute dtype: computed in fp32 once (the reference's
    formula) and cast, as HF's rotary embedding casts to the activations' dtype."""
    cos, sin = ref.rope_cos_sin(torch.arange(n_positions), model.spec.head_dim, model.spec.rope_theta)
    return cos.to(model.dtype), sin.to(model.dtype)


def attention(model, layer, x, start, cache, layer_idx, rope):
    """One layer's self-attention for the T new tokens at positions start..start+T-1.
    x: [T, H] (normed) -> [T, H]."""
    spec = model.spec
    T, hd = x.shape[0], spec.head_dim
    q = F.linear(x, layer.q)  # [T, heads*hd]
    k = F.linear(x, layer.k)  # [T, kv*hd]
    v = F.linear(x, layer.v)  # [T, kv*hd]
    if layer.q_norm is not None:
        # OLMoE normalises the whole projection (all heads together) before splitting into heads.
        q = rms_norm(q, layer.q_norm, spec.eps)
        k = rms_norm(k, layer.k_norm, spec.eps)
        clip = spec.config.get("clip_qkv")
        if clip is not None:
            q, k, v = (t.clamp(min=-clip, max=clip) for t in (q, k, v))
    q = q.view(T, spec.heads, hd).transpose(0, 1)  # [heads, T, hd]
    k = k.view(T, spec.kv_heads, hd).transpose(0, 1)  # [kv, T, hd]
    v = v.view(T, spec.kv_heads, hd).transpose(0, 1)  # [kv, T, hd]

    cos, sin = rope[0][start:start + T], rope[1][start:start + T]  # [T, hd] each
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin

    k, v = cache.update(layer_idx, k, v)  # [kv, S, hd], S = start + T
    S = k.shape[1]
    groups = spec.heads // spec.kv_heads
    # repeat_kv: query head h reads kv head h // groups (HF expands and copies every step too).
    k = k.repeat_interleave(groups, dim=0)  # [heads, S, hd]
    v = v.repeat_interleave(groups, dim=0)  # [heads, S, hd]

    scores = torch.matmul(q, k.transpose(1, 2)) * hd ** -0.5  # [heads, T, S]
    if T > 1:
        # Query i (absolute position start+i) sees keys 0..start+i. A single decode token sees all.
        allowed = torch.ones(T, S, dtype=torch.bool).tril(diagonal=start)  # [T, S]
        scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)  # [heads, T, S]
    out = torch.matmul(probs, v)  # [heads, T, hd]
    out = out.transpose(0, 1).reshape(T, spec.heads * hd)  # [T, heads*hd]
    return F.linear(out, layer.o)  # [T, H]


def sparse_moe(model, layer, x):
    """MixtralSparseMoeBlock / OlmoeSparseMoeBlock. x: [T, H] (normed) -> [T, H]."""
    logits = F.linear(x, layer.router)  # [T, E]
    weights = torch.softmax(logits, dim=-1, dtype=torch.float32)  # [T, E] fp32
    weights, selected = torch.topk(weights, model.spec.top_k, dim=-1)  # [T, k] each
    if model.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights.to(x.dtype)  # HF casts the combine weights back to the activations' dtype

    out = torch.zeros_like(x)  # [T, H]
    # [E, k, T]: mask[e, j, t] is 1 when token t's j-th choice is expert e.
    mask = F.one_hot(selected, num_classes=model.spec.experts).permute(2, 1, 0)
    for e, (w_gate, w_up, w_down) in enumerate(layer.experts):
        slot, token = torch.where(mask[e])  # [n_e] each
        if token.shape[0] == 0:
            continue
        h = x[token]  # [n_e, H]
        y = F.linear(F.silu(F.linear(h, w_gate)) * F.linear(h, w_up), w_down)  # [n_e, H]
        out.index_add_(0, token, y * weights[token, slot, None])
    return out


def forward(model, ids, cache, rope):
    """Run the new tokens `ids` (list of int) after the cached ones; returns fp32 logits [V] of the
    last position only (HF generate asks for one logits row: logits_to_keep=1)."""
    spec = model.spec
    start = cache.length()
    x = model.embed[torch.tensor(ids, dtype=torch.int64)]  # [T, H]
    for i, layer in enumerate(model.layers):
        x = x + attention(model, layer, rms_norm(x, layer.input_norm, spec.eps), start, cache, i, rope)
        x = x + sparse_moe(model, layer, rms_norm(x, layer.post_norm, spec.eps))
    last = rms_norm(x[-1:], model.final_norm, spec.eps)  # [1, H]
    return F.linear(last, model.lm_head)[0].float()  # [V]


# ----------------------------------------------------------------------------------------------
# generation and timing
# ----------------------------------------------------------------------------------------------

def check_window(model, total):
    """Refuse lengths the plain causal mask would get wrong (as the reference does)."""
    limit = model.spec.config.get("max_position_embeddings")
    if limit is not None and total > limit:
        raise ValueError(f"prompt + generated = {total} exceeds max_position_embeddings {limit}")
    window = model.spec.config.get("sliding_window")
    if window is not None and total > window:
        raise NotImplementedError(f"{total} tokens exceed sliding_window {window}")


def generate(model, prompt, n, rope, want_logprobs=False):
    """Greedy decoding of exactly n tokens (EOS ignored). The prefill forward yields token 1; each
    of the n-1 decode steps is one forward of one token. Returns a dict with ids, prefill seconds,
    per-decode-step seconds and, if asked, the log-probability of each chosen token."""
    check_window(model, len(prompt) + n)
    cache = KVCache(model.spec.layers)
    out = {"ids": [], "logprobs": [], "prefill_s": 0.0, "step_s": []}
    feed = list(prompt)
    for step in range(n):
        t0 = time.perf_counter()
        logits = forward(model, feed, cache, rope)  # [V]
        nxt = int(torch.argmax(logits).item())  # .item() ends the step, as a server's sampler does
        dt = time.perf_counter() - t0
        if step == 0:
            out["prefill_s"] = dt
        else:
            out["step_s"].append(dt)
        if want_logprobs:
            out["logprobs"].append(torch.log_softmax(logits, dim=-1)[nxt].item())
        out["ids"].append(nxt)
        feed = [nxt]
    return out


def special_ids(model_dir):
    """Ids of tokenizer.json's added_tokens (bos/eos/chat markers), kept out of random prompts."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        return {t["id"] for t in json.load(f).get("added_tokens", [])}


def random_prompts(model_dir, vocab, length, count, seed):
    """count prompts of length ids, drawn uniformly from the non-special ids below vocab; the same
    seed gives the same prompts on every run and machine (Python's Mersenne Twister)."""
    banned = special_ids(model_dir)
    allowed = [i for i in range(vocab) if i not in banned]
    rng = random.Random(seed)
    return [[rng.choice(allowed) for _ in range(length)] for _ in range(count)]


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    rank = max(1, -(-len(s) * q // 100))  # ceil(len * q / 100), at least 1
    return s[int(rank) - 1]


def run(model, prompts, max_tokens, warmup):
    """Warm up on the first prompt (untimed), then generate every prompt in turn, one at a time."""
    longest = max(len(p) for p in prompts) + max_tokens
    rope = rope_tables(model, longest)
    with torch.inference_mode():
        for _ in range(warmup):
            generate(model, prompts[0], max_tokens, rope)
        t0 = time.perf_counter()
        results = [generate(model, p, max_tokens, rope) for p in prompts]
        wall = time.perf_counter() - t0
    return results, wall


def summarise(model, prompts, results, wall, threads):
    prefill = sum(r["prefill_s"] for r in results)
    steps = [s for r in results for s in r["step_s"]]
    decode = sum(steps)
    prompt_total = sum(len(p) for p in prompts)
    generated = sum(len(r["ids"]) for r in results)

    def rate(n, s):
        return n / s if s > 0 else None

    return {
        "implementation": "pytorch-eager",
        "torch_version": torch.__version__,
        "threads": threads,
        "dtype": str(model.dtype).replace("torch.", ""),
        "prompts": len(prompts),
        "prompt_tokens_total": prompt_total,
        "generated_tokens_total": generated,
        "prefill_seconds": prefill,
        "decode_seconds": decode,
        "wall_seconds": wall,
        "prefill_tokens_per_s": rate(prompt_total, prefill),
        # Decode tokens are those produced by decode steps (the first token comes from prefill).
        "decode_tokens_per_s": rate(len(steps), decode),
        "output_tokens_per_s": rate(generated, wall),
        "decode_step_ms_p50": percentile(steps, 50) * 1e3 if steps else None,
        "decode_step_ms_p99": percentile(steps, 99) * 1e3 if steps else None,
        "first_prompt_greedy_ids": results[0]["ids"][:16],
    }


def blas_backend(threads):
    """Which BLAS library serves float32 matmuls, and make OpenBLAS use `threads` threads.

    Debian's torch is built with BLAS_INFO=generic: float32 F.linear calls whatever libblas.so.3
    the dynamic loader finds -- by default netlib's reference BLAS (unoptimised, single-threaded,
    ~20x slower than OpenBLAS here). OpenBLAS can be swapped in with LD_LIBRARY_PATH (README).
    torch.set_num_threads does not reach OpenBLAS's own pool, so it is set here to match.
    bfloat16 matmuls do not go through this library."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "libblas.so" in line or "openblas" in line}
    path = sorted(paths)[0] if paths else None
    if path is None:
        return "unknown"
    lib = ctypes.CDLL(path)
    if hasattr(lib, "openblas_set_num_threads"):
        lib.openblas_set_num_threads(threads)
        return f"openblas ({path})"
    return f"not openblas: {os.path.realpath(path)} (Debian default: netlib reference BLAS)"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint folder (config.json + safetensors)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts-file", help='JSON {"prompts": [[ids...], ...]}')
    src.add_argument("--prompt-tokens", type=int, help="length P of each pseudo-random prompt")
    ap.add_argument("--num-prompts", type=int, default=1, help="N pseudo-random prompts")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pseudo-random prompts")
    ap.add_argument("--max-tokens", type=int, default=16, help="generate exactly D tokens per prompt")
    ap.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations of the first prompt")
    args = ap.parse_args(argv)
    if args.max_tokens < 1:
        ap.error("--max-tokens must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = load(args.model, _DTYPES[args.dtype])
    if args.prompts_file:
        with open(args.prompts_file) as f:
            prompts = [[int(i) for i in p] for p in json.load(f)["prompts"]]
    else:
        prompts = random_prompts(args.model, model.spec.config["vocab_size"], args.prompt_tokens,
                                 args.num_prompts, args.seed)
    if not prompts or any(len(p) == 0 for p in prompts):
        raise SystemExit("need at least one prompt, and no empty prompt")
    blas = blas_backend(torch.get_num_threads())
    results, wall = run(model, prompts, args.max_tokens, args.warmup)
    summary = summarise(model, prompts, results, wall, torch.get_num_threads())
    summary["blas"] = blas  # float32 speed depends on it entirely (see blas_backend)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
