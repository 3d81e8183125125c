#!/usr/bin/python3
"""Independent reference implementation of the Hugging Face `transformers` maths for Mixtral and
OLMoE mixture-of-experts decoders, written in plain PyTorch (no `transformers`, no `safetensors`).

It exists so that MoeServe's C# engine can be checked against numbers produced by code that shares
nothing with it. It favours obviousness over speed: every call recomputes the whole sequence (no KV
cache), everything runs in float32, and every step mirrors the corresponding HF module:

  MixtralForCausalLM / OlmoeForCausalLM
    embed_tokens -> N x [ x + attn(input_layernorm(x)); x + moe(post_attention_layernorm(x)) ]
    -> norm -> lm_head

Routing is a separate function, `route(probs, k, config, policy)`, so that MoeServe's routing
policies (see shared/design/routing-policies.md) can be added next to HF's own ("vanilla").

Usage as a script (prints JSON):
  /usr/bin/python3 scripts/reference/hf_reference.py --model DIR --prompt-ids 1,2,3 --max-tokens 8 \
      [--policy token_drop --capacity-factor 1.0] [--ignore-eos]

With a capacity policy, every forward treats its whole sequence as ONE batch (T = its length): the
prompt is one prefill step, and each greedy step re-runs prompt + generated tokens as a new prefill.
That is not what a serving engine's decode steps do (their batch is the decode tokens, and capacity
is off for decode by default), so only the prompt results of a capacity policy are comparable.
"""

import argparse
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# safetensors (hand-written: 8-byte LE header length, JSON header, raw little-endian bytes)
# ----------------------------------------------------------------------------------------------

# safetensors dtype name -> (numpy dtype used to read the raw bytes, bytes per element)
_ST_DTYPES = {
    "F32": ("<f4", 4),
    "F16": ("<f2", 2),
    "BF16": ("<i2", 2),  # numpy has no bfloat16: read the bit patterns, reinterpret in torch
}


def _decode_tensor(raw, dtype, shape):
    """Raw little-endian bytes -> float32 torch tensor of `shape`."""
    np_dtype, _ = _ST_DTYPES[dtype]
    arr = np.frombuffer(raw, dtype=np_dtype).copy()  # copy: frombuffer is read-only
    t = torch.from_numpy(arr)
    if dtype == "BF16":
        t = t.view(torch.bfloat16)  # same 16 bits, reinterpreted
    return t.to(torch.float32).reshape(shape)


def read_safetensors_file(path):
    """Read one .safetensors file -> (dict name -> float32 tensor, metadata dict or None)."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len].decode("utf-8"))
    body = data[8 + header_len:]
    metadata = header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        start, end = info["data_offsets"]
        shape = info["shape"]
        expected = _ST_DTYPES[dtype][1] * math.prod(shape)
        if end - start != expected:
            raise ValueError(f"{path}: tensor {name} has {end - start} bytes, expected {expected}")
        tensors[name] = _decode_tensor(body[start:end], dtype, shape)
    return tensors, metadata


def tensor_to_bytes(t, dtype):
    """A tensor -> its little-endian bytes in safetensors dtype `dtype` ("F32", "F16", "BF16")."""
    t = t.detach().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write_safetensors_file(path, tensors, dtype, metadata=None):
    """Write {name: tensor} to `path`, every tensor stored as `dtype`.

    Tensors are laid out in sorted name order and the JSON header is written compactly with sorted
    keys, so the same input always gives byte-identical files. The header is padded with spaces to
    a multiple of 8 bytes (the data section then starts 8-aligned, as the format recommends)."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        raw = tensor_to_bytes(tensors[name], dtype)
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * ((8 - len(header_bytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for raw in chunks:
            f.write(raw)
    return offset  # bytes of tensor data


def load_weights(model_dir):
    """All tensors of a checkpoint folder as float32: a single `model.safetensors`, or the shards
    named by `model.safetensors.index.json`'s `weight_map`."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        weights = {}
        for shard in sorted(set(weight_map.values())):
            tensors, _ = read_safetensors_file(os.path.join(model_dir, shard))
            for name, t in tensors.items():
                if weight_map.get(name) != shard:
                    raise ValueError(f"{shard} holds {name}, but the index maps it elsewhere")
                weights[name] = t
        missing = set(weight_map) - set(weights)
        if missing:
            raise ValueError(f"index names tensors no shard holds: {sorted(missing)[:5]}")
        return weights
    single = os.path.join(model_dir, "model.safetensors")
    tensors, _ = read_safetensors_file(single)
    return tensors


# ----------------------------------------------------------------------------------------------
# model description
# ----------------------------------------------------------------------------------------------

@dataclass
class Model:
    config: dict
    weights: dict  # name -> float32 tensor
    arch: str  # "mixtral" or "olmoe"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int
    top_k: int
    eps: float
    rope_theta: float

    def w(self, name):
        return self.weights[name]

    def moe_prefix(self, layer):
        # Mixtral keeps its MoE block under `block_sparse_moe`, OLMoE under `mlp`.
        return f"model.layers.{layer}." + ("block_sparse_moe" if self.arch == "mixtral" else "mlp")

    def expert_weights(self, layer, e):
        """(gate/w1, up/w3, down/w2) of expert e, each [out, in] as nn.Linear stores them."""
        p = f"{self.moe_prefix(layer)}.experts.{e}."
        if self.arch == "mixtral":
            return self.w(p + "w1.weight"), self.w(p + "w3.weight"), self.w(p + "w2.weight")
        return self.w(p + "gate_proj.weight"), self.w(p + "up_proj.weight"), self.w(p + "down_proj.weight")

    def lm_head(self):
        if self.config.get("tie_word_embeddings", False):
            return self.w("model.embed_tokens.weight")
        return self.w("lm_head.weight")


def _check_supported(config, arch):
    """Refuse configurations this reference does not model, rather than silently diverge."""
    if config.get("hidden_act", "silu") != "silu":
        raise NotImplementedError(f"hidden_act {config['hidden_act']}")
    if config.get("rope_scaling") is not None:
        raise NotImplementedError("rope_scaling")
    if config.get("attention_bias", False):
        raise NotImplementedError("attention_bias")


def load_model(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    arch = config["model_type"]
    if arch not in ("mixtral", "olmoe"):
        raise ValueError(f"model_type {arch!r} is neither mixtral nor olmoe")
    _check_supported(config, arch)
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    experts = config["num_local_experts"] if arch == "mixtral" else config["num_experts"]
    return Model(
        config=config,
        weights=load_weights(model_dir),
        arch=arch,
        hidden=hidden,
        layers=config["num_hidden_layers"],
        heads=heads,
        # HF defaults when the key is absent: MixtralConfig 8, OlmoeConfig = num_attention_heads.
        kv_heads=config.get("num_key_value_heads") or (8 if arch == "mixtral" else heads),
        head_dim=config.get("head_dim") or hidden // heads,
        experts=experts,
        top_k=config["num_experts_per_tok"],
        eps=config.get("rms_norm_eps", 1e-5),
        rope_theta=float(config.get("rope_theta", 1e6 if arch == "mixtral" else 10000.0)),
    )


# ----------------------------------------------------------------------------------------------
# building blocks (each a direct transcription of the HF module)
# ----------------------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    """MixtralRMSNorm / OlmoeRMSNorm: normalise over the last dim in fp32, then scale."""
    x = x.float()
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return weight * x


def rope_cos_sin(positions, head_dim, theta):
    """cos, sin: [T, head_dim]; the frequency table is duplicated (cat(freqs, freqs)) as in HF."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.outer(positions.float(), inv_freq)  # [T, head_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, head_dim]
    return emb.cos(), emb.sin()


def rotate_half(x):
    """[..., d] -> [..., d]: (x1, x2) -> (-x2, x1), halves split at d/2 (not interleaved)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    """x: [heads, T, head_dim]; cos/sin: [T, head_dim] broadcast over heads."""
    return x * cos + rotate_half(x) * sin


def attention(model, layer, x):
    """Self-attention of one layer over the whole sequence. x: [T, hidden] (already normed)."""
    T = x.shape[0]
    p = f"model.layers.{layer}.self_attn."
    q = x @ model.w(p + "q_proj.weight").T  # [T, heads*head_dim]
    k = x @ model.w(p + "k_proj.weight").T  # [T, kv_heads*head_dim]
    v = x @ model.w(p + "v_proj.weight").T  # [T, kv_heads*head_dim]
    if model.arch == "olmoe":
        # OLMoE normalises the full projections (all heads together) before splitting into heads.
        q = rms_norm(q, model.w(p + "q_norm.weight"), model.eps)
        k = rms_norm(k, model.w(p + "k_norm.weight"), model.eps)
        clip = model.config.get("clip_qkv")
        if clip is not None:
            q = q.clamp(min=-clip, max=clip)
            k = k.clamp(min=-clip, max=clip)
            v = v.clamp(min=-clip, max=clip)
    hd = model.head_dim
    q = q.view(T, model.heads, hd).transpose(0, 1)  # [heads, T, hd]
    k = k.view(T, model.kv_heads, hd).transpose(0, 1)  # [kv_heads, T, hd]
    v = v.view(T, model.kv_heads, hd).transpose(0, 1)  # [kv_heads, T, hd]

    cos, sin = rope_cos_sin(torch.arange(T), hd, model.rope_theta)
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)

    # Grouped-query attention: query head h reads kv head h // (heads / kv_heads) (repeat_kv).
    groups = model.heads // model.kv_heads
    k = k.repeat_interleave(groups, dim=0)  # [heads, T, hd]
    v = v.repeat_interleave(groups, dim=0)  # [heads, T, hd]

    scores = (q @ k.transpose(1, 2)) * hd ** -0.5  # [heads, T, T]; HF multiplies by scaling
    allowed = torch.ones(T, T, dtype=torch.bool).tril()  # causal: query i sees keys j <= i
    window = model.config.get("sliding_window")
    if window is not None and T > window:
        # HF's sliding-window masks changed between versions; keep out of that ambiguity.
        raise NotImplementedError(f"sequence of {T} tokens exceeds sliding_window {window}")
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)  # [heads, T, T]
    out = probs @ v  # [heads, T, hd]
    out = out.transpose(0, 1).reshape(T, model.heads * hd)  # [T, heads*hd]
    return out @ model.w(p + "o_proj.weight").T  # [T, hidden]


def expert_mlp(x, w_gate, w_up, w_down):
    """SwiGLU expert: down(silu(gate x) * up x). x: [n, hidden] -> [n, hidden]."""
    return (torch.nn.functional.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


# ----------------------------------------------------------------------------------------------
# routing
# ----------------------------------------------------------------------------------------------

@dataclass
class Policy:
    name: str = "vanilla"  # "vanilla" | "token_drop"
    capacity_factor: float = 1.0  # gamma (token_drop)
    strategy: str = "score"  # token_drop: which tokens an over-full expert keeps
    renormalize_after_drop: bool = False

    def to_json(self):
        if self.name == "vanilla":
            return {"name": "vanilla"}
        return {"name": self.name, "capacity_factor": self.capacity_factor,
                "strategy": self.strategy, "renormalize_after_drop": self.renormalize_after_drop}


@dataclass
class Routing:
    weights: torch.Tensor  # [T, E] combine weight of each (token, expert) pair, 0 where unused
    used: torch.Tensor  # [T, E] bool, the pairs that are computed
    info: dict = field(default_factory=dict)  # per-layer statistics (loads, capacity, drops)


def native_topk(probs, k, config):
    """Vanilla HF routing: top-k of the fp32 softmax; Mixtral always renormalises the k weights to
    sum 1, OLMoE only when norm_topk_prob is true. Returns (weights [T, k], experts [T, k])."""
    top_p, top_e = torch.topk(probs, k, dim=-1)  # [T, k] each; ties resolved as torch.topk does
    renorm = True if config["model_type"] == "mixtral" else config.get("norm_topk_prob", False)
    if renorm:
        top_p = top_p / top_p.sum(dim=-1, keepdim=True)
    return top_p, top_e


def capacity(gamma, k, T, E):
    """C = max(1, ceil(gamma * k * T / E)), clamped to T (routing-policies.md, "Capacity")."""
    return min(T, max(1, math.ceil(gamma * k * T / E)))


def route(probs, k, config, policy):
    """probs: [T, E] fp32 router probabilities of one layer for the whole flat batch."""
    policy = policy or Policy()
    T, E = probs.shape
    top_p, top_e = native_topk(probs, k, config)
    weights = torch.zeros(T, E, dtype=torch.float32).scatter(1, top_e, top_p)  # [T, E]
    used = torch.zeros(T, E, dtype=torch.bool).scatter(1, top_e, True)  # [T, E]
    loads = used.sum(dim=0).tolist()  # n_e before any capacity
    if policy.name == "vanilla":
        return Routing(weights, used, {"loads": loads})
    if policy.name != "token_drop":
        raise NotImplementedError(f"routing policy {policy.name}")
    if policy.strategy != "score":
        raise NotImplementedError(f"token_drop strategy {policy.strategy}")

    C = capacity(policy.capacity_factor, k, T, E)
    kept = used.clone()
    margins = []  # p gap between the last kept and the first dropped token of each full expert
    for e in range(E):
        tokens = [t for t in range(T) if used[t, e]]
        if len(tokens) <= C:
            continue
        # Highest p first, then lower token index (deterministic, as the design specifies).
        order = sorted(tokens, key=lambda t: (-probs[t, e].item(), t))
        for t in order[C:]:
            kept[t, e] = False
        margins.append(probs[order[C - 1], e].item() - probs[order[C], e].item())
    weights = torch.where(kept, weights, torch.zeros_like(weights))
    if policy.renormalize_after_drop:
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-20)
    info = {
        "capacity": C,
        "loads": loads,
        "loads_after": kept.sum(dim=0).tolist(),
        "dropped_pairs": int(used.sum().item() - kept.sum().item()),
        "drop_margin": min(margins) if margins else None,
    }
    return Routing(weights, kept, info)


def moe(model, layer, x, policy):
    """Sparse MoE block. x: [T, hidden] (already normed). Returns (out [T, hidden], trace)."""
    gate = model.w(f"{model.moe_prefix(layer)}.gate.weight")  # [E, hidden]
    logits = x @ gate.T  # [T, E]
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)  # [T, E]
    r = route(probs, model.top_k, model.config, policy)
    out = torch.zeros_like(x)
    for e in range(model.experts):  # HF loops over experts and index_adds their outputs
        idx = torch.nonzero(r.used[:, e], as_tuple=False).flatten()
        if idx.numel() == 0:
            continue
        y = expert_mlp(x[idx], *model.expert_weights(layer, e))  # [n_e, hidden]
        out.index_add_(0, idx, y * r.weights[idx, e, None])
    return out, {"router_logits": logits, **r.info}


def forward(model, ids, policy=None):
    """Logits [T, vocab] for token ids (list of int), plus a per-layer routing trace. The whole
    sequence is one batch (T = len(ids)), which is what token_drop's capacity is computed over."""
    ids_t = torch.tensor(ids, dtype=torch.int64)
    x = model.w("model.embed_tokens.weight")[ids_t]  # [T, hidden]
    trace = []
    for layer in range(model.layers):
        p = f"model.layers.{layer}."
        h = rms_norm(x, model.w(p + "input_layernorm.weight"), model.eps)
        x = x + attention(model, layer, h)
        h = rms_norm(x, model.w(p + "post_attention_layernorm.weight"), model.eps)
        y, info = moe(model, layer, h, policy)
        x = x + y
        trace.append(info)
    x = rms_norm(x, model.w("model.norm.weight"), model.eps)
    return x @ model.lm_head().T, trace  # [T, vocab]


# ----------------------------------------------------------------------------------------------
# helpers for expected outputs
# ----------------------------------------------------------------------------------------------

def prompt_logprobs(model, ids, policy=None):
    """Teacher-forced log p(ids[i] | ids[:i]) for each position; the first token has none."""
    with torch.no_grad():
        logits, _ = forward(model, ids, policy)
    logp = torch.log_softmax(logits, dim=-1)  # [T, vocab]
    return [None] + [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]


def greedy(model, ids, n, stop_ids=(), policy=None, top=5):
    """Greedy decoding of up to n tokens, recomputing the full sequence at every step.
    Returns dict: ids, logprobs (of each chosen token), top (list per step of [id, logprob]),
    margins (top-1 minus top-2 logit per step)."""
    seq = list(ids)
    out = {"ids": [], "logprobs": [], "top": [], "margins": []}
    with torch.no_grad():
        for _ in range(n):
            logits, _ = forward(model, seq, policy)
            last = logits[-1]  # [vocab]
            logp = torch.log_softmax(last, dim=-1)
            nxt = int(torch.argmax(last).item())
            top_lp, top_id = torch.topk(logp, top)
            two = torch.topk(last, 2).values
            out["ids"].append(nxt)
            out["logprobs"].append(logp[nxt].item())
            out["top"].append([[int(i), float(v)] for i, v in zip(top_id.tolist(), top_lp.tolist())])
            out["margins"].append((two[0] - two[1]).item())
            seq.append(nxt)
            if nxt in stop_ids:
                break
    return out


def router_margins(trace, k):
    """Smallest gap, in router logits, between the k-th and (k+1)-th expert of any token in any
    layer: how far the top-k selection is from a tie."""
    smallest = float("inf")
    for info in trace:
        z = torch.sort(info["router_logits"], dim=-1, descending=True).values  # [T, E]
        smallest = min(smallest, (z[:, k - 1] - z[:, k]).min().item())
    return smallest


def eos_ids(model):
    eos = model.config.get("eos_token_id")
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, list) else (eos,)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint folder (config.json + safetensors)")
    ap.add_argument("--prompt-ids", required=True, help="comma-separated token ids")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--policy", default="vanilla", choices=["vanilla", "token_drop"])
    ap.add_argument("--capacity-factor", type=float, default=1.0)
    ap.add_argument("--renormalize-after-drop", action="store_true")
    ap.add_argument("--ignore-eos", action="store_true", help="do not stop at eos_token_id")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    model = load_model(args.model)
    ids = [int(s) for s in args.prompt_ids.split(",") if s.strip()]
    policy = Policy(args.policy, args.capacity_factor, "score", args.renormalize_after_drop)
    with torch.no_grad():
        _, trace = forward(model, ids, policy)
    g = greedy(model, ids, args.max_tokens, () if args.ignore_eos else eos_ids(model), policy)
    result = {
        "model": os.path.abspath(args.model),
        "policy": policy.to_json(),
        "prompt_ids": ids,
        "prompt_logprobs": prompt_logprobs(model, ids, policy),
        "greedy_ids": g["ids"],
        "greedy_logprobs": g["logprobs"],
        "greedy_top5": g["top"],
        # Routing of the prompt as one batch: loads per expert, and for token_drop the capacity
        # and the number of dropped (token, expert) pairs, per layer.
        "prompt_routing": [{k: v for k, v in info.items() if k != "router_logits"} for info in trace],
    }
    # One key per line: readable, and still a single JSON object.
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in result.items())
    sys.stdout.write("{\n" + body + "\n}\n")


if __name__ == "__main__":
    main()
