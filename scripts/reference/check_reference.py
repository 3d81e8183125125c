#!/usr/bin/python3
"""Self-checks of hf_reference.py and of the fixtures make_fixtures.py wrote.

  /usr/bin/python3 scripts/reference/check_reference.py

The main check is `naive_logits`: a second forward pass written the slow, explicit way (float64,
one position / head / token at a time, RoPE as rotations of (i, i + d/2) pairs, routing by sorting
Python lists). It shares no tensor code with hf_reference.forward, so an indexing or broadcasting
slip in either shows up as a mismatch.
"""

import json
import math
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import hf_reference as ref  # noqa: E402

FIXTURES = ["tests/fixtures/mixtral-tiny-bf16-sharded", "tests/fixtures/olmoe-tiny-f32",
            "tests/fixtures/olmoe-tiny-f16-tied", "models/moeserve-tiny-random"]


def naive_rmsnorm(v, w, eps):  # v: [n] float64
    return w * v / math.sqrt(float((v * v).mean()) + eps)


def naive_rope(v, pos, theta):
    """Rotate each pair (v[i], v[i + d/2]) by angle pos * theta^(-2i/d)."""
    d = v.shape[0]
    out = v.clone()
    for i in range(d // 2):
        ang = pos * theta ** (-(2 * i) / d)
        c, s = math.cos(ang), math.sin(ang)
        out[i] = v[i] * c - v[i + d // 2] * s
        out[i + d // 2] = v[i + d // 2] * c + v[i] * s
    return out


def naive_logits(model, ids):
    """[T, vocab] float64 logits, computed position by position."""
    W = {k: v.double() for k, v in model.weights.items()}
    cfg, hd, eps = model.config, model.head_dim, model.eps
    xs = [W["model.embed_tokens.weight"][i].clone() for i in ids]
    for L in range(model.layers):
        p = f"model.layers.{L}."
        hs = [naive_rmsnorm(x, W[p + "input_layernorm.weight"], eps) for x in xs]
        qs, ks, vs = [], [], []
        for t, h in enumerate(hs):
            q, k, v = W[p + "self_attn.q_proj.weight"] @ h, W[p + "self_attn.k_proj.weight"] @ h, \
                W[p + "self_attn.v_proj.weight"] @ h
            if model.arch == "olmoe":
                q = naive_rmsnorm(q, W[p + "self_attn.q_norm.weight"], eps)
                k = naive_rmsnorm(k, W[p + "self_attn.k_norm.weight"], eps)
            qs.append([naive_rope(q[a * hd:(a + 1) * hd], t, model.rope_theta) for a in range(model.heads)])
            ks.append([naive_rope(k[a * hd:(a + 1) * hd], t, model.rope_theta) for a in range(model.kv_heads)])
            vs.append([v[a * hd:(a + 1) * hd] for a in range(model.kv_heads)])
        per_kv = model.heads // model.kv_heads
        for t in range(len(xs)):
            heads_out = []
            for a in range(model.heads):
                kv = a // per_kv  # query head a reads kv head a // group size
                scores = [float(qs[t][a] @ ks[j][kv]) / math.sqrt(hd) for j in range(t + 1)]
                m = max(scores)
                e = [math.exp(s - m) for s in scores]
                heads_out.append(sum(e[j] / sum(e) * vs[j][kv] for j in range(t + 1)))
            xs[t] = xs[t] + W[p + "self_attn.o_proj.weight"] @ torch.cat(heads_out)
        moe = model.moe_prefix(L)
        renorm = model.arch == "mixtral" or cfg.get("norm_topk_prob", False)
        for t in range(len(xs)):
            h = naive_rmsnorm(xs[t], W[p + "post_attention_layernorm.weight"], eps)
            z = (W[moe + ".gate.weight"] @ h).tolist()
            m = max(z)
            pr = [math.exp(v - m) for v in z]
            pr = [v / sum(pr) for v in pr]
            chosen = sorted(range(model.experts), key=lambda e: -pr[e])[:model.top_k]
            denom = sum(pr[e] for e in chosen) if renorm else 1.0
            for e in chosen:
                wg, wu, wd = (w.double() for w in model.expert_weights(L, e))
                a_ = wg @ h
                xs[t] = xs[t] + (pr[e] / denom) * (wd @ (a_ / (1 + torch.exp(-a_)) * (wu @ h)))
    head = model.lm_head().double()
    return torch.stack([head @ naive_rmsnorm(x, W["model.norm.weight"], eps) for x in xs])


def check_naive(model, name):
    ids = list(range(3, 3 + 9 * 7, 7))[:9]  # 9 arbitrary regular ids
    fast, _ = ref.forward(model, ids)
    slow = naive_logits(model, ids)
    diff = (fast.double() - slow).abs().max().item()
    assert diff < 2e-4, f"{name}: forward vs naive max |diff| {diff}"
    return diff


def check_causal(model, name):
    ids = [5, 77, 300, 12, 9, 250, 31, 44]
    full, _ = ref.forward(model, ids)
    part, _ = ref.forward(model, ids[:5])
    assert torch.allclose(full[:5], part, atol=1e-5), f"{name}: prefix logits depend on later tokens"


def check_token_drop(model, name):
    ids = [(i * 37) % 300 for i in range(30)]
    van, tv = ref.forward(model, ids, ref.Policy("vanilla"))
    big, tb = ref.forward(model, ids, ref.Policy("token_drop", capacity_factor=100.0))
    assert torch.equal(van, big), f"{name}: token_drop without binding capacity must equal vanilla"
    assert all(t["dropped_pairs"] == 0 for t in tb)
    _, ts = ref.forward(model, ids, ref.Policy("token_drop", capacity_factor=0.5))
    for t in ts:
        C = t["capacity"]
        assert C == ref.capacity(0.5, model.top_k, len(ids), model.experts)
        assert all(n <= C for n in t["loads_after"]), t
        assert t["dropped_pairs"] == sum(max(0, n - C) for n in t["loads"]), t


def check_route_ties():
    """Equal p for an expert: the lower token index wins; weights of dropped pairs become 0."""
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.6, 0.1, 0.3], [0.5, 0.3, 0.2]])
    cfg = {"model_type": "olmoe", "norm_topk_prob": False}
    r = ref.route(probs, 1, cfg, ref.Policy("token_drop", capacity_factor=1.0))
    # C = ceil(1 * 1 * 4 / 3) = 2: expert 0 is chosen by all four tokens; keeps token 2 (p 0.6)
    # and token 0 (lowest index among the 0.5 ties).
    assert r.info["capacity"] == 2
    assert r.used[:, 0].tolist() == [True, False, True, False], r.used
    assert r.weights[1].sum().item() == 0 and r.weights[3].sum().item() == 0
    assert abs(r.weights[0, 0].item() - 0.5) < 1e-7  # OLMoE without norm_topk_prob: raw p
    cfg_m = {"model_type": "mixtral"}
    r = ref.route(probs, 2, cfg_m, ref.Policy("vanilla"))
    assert torch.allclose(r.weights.sum(-1), torch.ones(4)), "mixtral renormalises top-k"


def check_safetensors_roundtrip():
    g = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(3, 5, generator=g), "b.c": torch.randn(7, generator=g) * 100}
    with tempfile.TemporaryDirectory() as d:
        for dtype, store in (("F32", torch.float32), ("F16", torch.float16), ("BF16", torch.bfloat16)):
            path = os.path.join(d, f"{dtype}.safetensors")
            ref.write_safetensors_file(path, tensors, dtype, {"format": "pt"})
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
            assert n % 8 == 0, "header not padded to 8"
            back, meta = ref.read_safetensors_file(path)
            assert meta == {"format": "pt"}
            for k, t in tensors.items():
                assert torch.equal(back[k], t.to(store).float()), (dtype, k)


def check_fixture_files(rel):
    d = os.path.join(ROOT, rel)
    model = ref.load_model(d)
    cfg = model.config
    V, H = cfg["vocab_size"], cfg["hidden_size"]
    assert model.w("model.embed_tokens.weight").shape == (V, H)
    assert ("lm_head.weight" in model.weights) != cfg["tie_word_embeddings"]
    with open(os.path.join(d, "tokenizer.json")) as f:
        tj = json.load(f)
    assert len(tj["model"]["vocab"]) + len(tj["added_tokens"]) == V, "vocab_size != tokenizer size"
    for layer in range(model.layers):
        gate = model.w(f"{model.moe_prefix(layer)}.gate.weight")
        assert gate.shape == (model.experts, H)
    return model


def check_cli_matches_expected(rel):
    """The CLI (a separate process) reproduces the first case of expected.json."""
    d = os.path.join(ROOT, rel)
    with open(os.path.join(d, "expected.json")) as f:
        case = json.load(f)["cases"][0]
    out = subprocess.run([sys.executable, os.path.join(HERE, "hf_reference.py"), "--model", d,
                          "--prompt-ids", ",".join(map(str, case["prompt_ids"])),
                          "--max-tokens", str(len(case["greedy_ids"])), "--ignore-eos"],
                         check=True, capture_output=True, text=True).stdout
    got = json.loads(out)
    assert got["greedy_ids"] == case["greedy_ids"], (got["greedy_ids"], case["greedy_ids"])
    for a, b in zip(got["greedy_logprobs"], case["greedy_logprobs"]):
        assert abs(a - b) < 1e-5


def main():
    torch.set_num_threads(1)
    check_safetensors_roundtrip()
    check_route_ties()
    with torch.no_grad():
        for rel in FIXTURES:
            model = check_fixture_files(rel)
            diff = check_naive(model, rel)
            check_causal(model, rel)
            check_token_drop(model, rel)
            if rel.startswith("tests/"):
                check_cli_matches_expected(rel)
            print(f"ok  {rel}  (forward vs naive float64: max |logit diff| {diff:.2e})")
    print("all checks passed")


if __name__ == "__main__":
    main()
