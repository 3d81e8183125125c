#!/usr/bin/python3
"""Writes MoeServe's tiny deterministic checkpoints and the expected outputs C# tests compare with.

  /usr/bin/python3 scripts/reference/make_fixtures.py [--repo ROOT]

Outputs (paths relative to the repository root):
  tests/fixtures/mixtral-tiny-bf16-sharded/  Mixtral, BF16, two shards + index, [INST] template
  tests/fixtures/olmoe-tiny-f32/             OLMoE, F32, q/k norms, norm_topk_prob false, untied
  tests/fixtures/olmoe-tiny-f16-tied/        OLMoE, F16, norm_topk_prob true, tied embeddings
  models/moeserve-tiny-random/               Mixtral, BF16, the server's default (random) model

Everything is deterministic (fixed seeds, one torch thread, sorted JSON), so running it twice gives
byte-identical files. Expected outputs are computed by hf_reference.py from the files as written.
"""

import argparse
import json
import os
import re
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference as ref  # noqa: E402

# ----------------------------------------------------------------------------------------------
# tokenizer: GPT-2 style byte-level BPE, merges learned here on a short paragraph
# ----------------------------------------------------------------------------------------------

TRAINING_TEXT = (
    "The little server wakes before the sun and reads the requests that came in the night. "
    "Each request is a short story, a question, or a list of numbers that someone wants to add. "
    "The server splits every sentence into tokens, sends the tokens through its layers, and asks "
    "a small team of experts what should come next. Some experts are good at numbers, some at "
    "names, and some at the quiet words that hold a sentence together. When too many tokens want "
    "the same expert, the server has to choose: it can wait, it can drop the weakest, or it can "
    "send them to an expert that is free. The best answer is the one that keeps the story true "
    "and still gets home in time. At the end of the day the server writes down what it learned, "
    "and then it waits for the next request, and the next, and the next. Tomorrow there will be "
    "more requests, more tokens and more experts, and the server will be ready for all of them."
)

NUM_MERGES = 100


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map: printable Latin-1 bytes map to
    themselves, the other 68 bytes to code points 256, 257, ... in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
                 + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    mapping = {}
    extra = 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}

# The ByteLevel pre-tokenizer's GPT-2 pattern is
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# Python's `re` has no \p{..} classes (and the `regex` module is not installed), so this is the
# same pattern restricted to ASCII letters and digits. It is exact for ASCII text, which is all
# the training text and the tokenizer test cases contain.
PRETOKENIZE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def pretokenize(text):
    """Text -> list of pre-tokens, each spelled in byte-level characters."""
    return ["".join(BYTE_TO_CHAR[b] for b in piece.encode("utf-8")) for piece in PRETOKENIZE.findall(text)]


def merge_word(word, pair, merged):
    """Replace every adjacent occurrence of `pair` in the symbol tuple `word` (left to right)."""
    out = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def learn_merges(text, num_merges):
    """Classic BPE training: repeatedly merge the most frequent adjacent pair (ties: the
    lexicographically smallest pair, so the result is deterministic). Stops early if no pair occurs
    twice."""
    counts = {}
    for tok in pretokenize(text):
        counts[tuple(tok)] = counts.get(tuple(tok), 0) + 1
    merges = []
    for _ in range(num_merges):
        pairs = {}
        for word, n in counts.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        new_counts = {}
        for word, n in counts.items():
            w = merge_word(word, best, best[0] + best[1])
            new_counts[w] = new_counts.get(w, 0) + n
        counts = new_counts
    return merges


def build_vocab(merges):
    """256 byte symbols (id = byte value), then one id per new merged symbol in merge order."""
    vocab = {BYTE_TO_CHAR[b]: b for b in range(256)}
    for a, b in merges:
        if a + b not in vocab:  # two merges can spell the same symbol; it keeps its first id
            vocab[a + b] = len(vocab)
    return vocab


class Tokenizer:
    """Just enough of HF's byte-level BPE to encode test strings and check the written files."""

    def __init__(self, merges, specials):
        self.merges = merges
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.vocab = build_vocab(merges)
        self.specials = {s: len(self.vocab) + i for i, s in enumerate(specials)}
        self.id_to_token = {i: t for t, i in {**self.vocab, **self.specials}.items()}

    def __len__(self):
        return len(self.vocab) + len(self.specials)

    def bpe(self, word):
        symbols = tuple(word)
        while len(symbols) > 1:
            ranked = [(self.ranks[p], p) for p in zip(symbols, symbols[1:]) if p in self.ranks]
            if not ranked:
                break
            _, pair = min(ranked)
            symbols = merge_word(symbols, pair, pair[0] + pair[1])
        return symbols

    def encode(self, text):
        """Special tokens are matched first (longest first), the rest is pre-tokenized and merged."""
        ids = []
        pattern = "(" + "|".join(re.escape(s) for s in sorted(self.specials, key=len, reverse=True)) + ")"
        for part in re.split(pattern, text):
            if part in self.specials:
                ids.append(self.specials[part])
            elif part:
                for tok in pretokenize(part):
                    ids.extend(self.vocab[s] for s in self.bpe(tok))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.id_to_token[i]
            if tok in self.specials:
                out.extend(tok.encode("utf-8"))
            else:
                out.extend(CHAR_TO_BYTE[c] for c in tok)
        return out.decode("utf-8", errors="replace")

    def tokenizer_json(self, bos_token, add_bos):
        """The Hugging Face `tokenizers` serialisation (tokenizer.json)."""
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for s, i in self.specials.items()]
        if add_bos:
            bos_id = self.specials[bos_token]
            post = {"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": bos_token, "type_id": 0}},
                               {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": bos_token, "type_id": 0}},
                             {"Sequence": {"id": "A", "type_id": 0}},
                             {"SpecialToken": {"id": bos_token, "type_id": 1}},
                             {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {bos_token: {"id": bos_token, "ids": [bos_id], "tokens": [bos_token]}}}
        else:
            post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": self.vocab,
                      "merges": [f"{a} {b}" for a, b in self.merges]},
        }


# Paraphrase of Mixtral-Instruct's template: strictly alternating user/assistant turns, an optional
# leading system message folded into the first user turn.
INST_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] + '\n\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.first %}{{ '[INST] ' + system + message['content'] + ' [/INST]' }}"
    "{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only system, user and assistant roles are supported!') }}{% endif %}"
    "{% endfor %}"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKENIZER_CASES = [
    "Hello world",
    "The server splits every sentence into tokens.",
    "  two leading spaces, a\ttab and\n\nnew lines  ",
    "Numbers 12345 and 3.14, punctuation?! (yes) it's done",
    "<|im_start|>user\nWhat comes next?<|im_end|>\n<|im_start|>assistant\n",
]


def tokenizer_config(tok, bos, eos, add_bos, template, max_len, pad=None):
    decoder = {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": True} for s, i in tok.specials.items()}
    return {
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "bos_token": bos,
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "model_max_length": max_len,
        "pad_token": pad,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


# ----------------------------------------------------------------------------------------------
# fixture specifications
# ----------------------------------------------------------------------------------------------

MIXTRAL_SPECIALS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
OLMOE_SPECIALS = ["<|endoftext|>", "<|padding|>", "<|im_start|>", "<|im_end|>"]

FIXTURES = [
    {
        "dir": "tests/fixtures/mixtral-tiny-bf16-sharded",
        "arch": "mixtral", "dtype": "BF16", "shards": 2, "seed": 1000,
        "hidden": 64, "intermediate": 128, "layers": 2, "heads": 4, "kv_heads": 2,
        "experts": 4, "top_k": 2, "max_pos": 256, "rope_theta": 1000000.0, "tied": False,
        "specials": MIXTRAL_SPECIALS, "bos": "<s>", "eos": "</s>", "gen_eos": ["</s>"],
        "add_bos": True, "template": INST_TEMPLATE, "expected": True,
    },
    {
        # intermediate 48, not 96: at F32 with 8 experts x 2 layers, 96 would make the
        # fixture ~1.5 MB; 48 keeps it under 1 MB (the F16 fixture keeps 96).
        "dir": "tests/fixtures/olmoe-tiny-f32",
        "arch": "olmoe", "dtype": "F32", "shards": 1, "seed": 2000,
        "hidden": 64, "intermediate": 48, "layers": 2, "heads": 4, "kv_heads": 4,
        "experts": 8, "top_k": 2, "max_pos": 256, "rope_theta": 10000.0, "tied": False,
        "norm_topk_prob": False,
        "specials": OLMOE_SPECIALS, "bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|padding|>",
        "gen_eos": ["<|endoftext|>", "<|im_end|>"],
        "add_bos": False, "template": CHATML_TEMPLATE, "expected": True, "token_drop": True,
    },
    {
        "dir": "tests/fixtures/olmoe-tiny-f16-tied",
        "arch": "olmoe", "dtype": "F16", "shards": 1, "seed": 3000,
        "hidden": 64, "intermediate": 96, "layers": 2, "heads": 4, "kv_heads": 4,
        "experts": 8, "top_k": 2, "max_pos": 256, "rope_theta": 500000.0, "tied": True,
        "norm_topk_prob": True,
        # Tied: logits = embeddings . h, and the stream starts as the input token's own embedding,
        # so unit embeddings make the model echo its last token for ever. Small embeddings and
        # layers that write 3x more into the stream give varied greedy continuations.
        "embed_std": 0.3, "out_scale": 3.0,
        "specials": OLMOE_SPECIALS, "bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|padding|>",
        "gen_eos": ["<|endoftext|>", "<|im_end|>"],
        "add_bos": False, "template": CHATML_TEMPLATE, "expected": True,
    },
    {
        "dir": "models/moeserve-tiny-random",
        "arch": "mixtral", "dtype": "BF16", "shards": 1, "seed": 4000,
        "hidden": 128, "intermediate": 256, "layers": 4, "heads": 4, "kv_heads": 2, "head_dim": 32,
        "experts": 8, "top_k": 2, "max_pos": 2048, "rope_theta": 1000000.0, "tied": False,
        "specials": MIXTRAL_SPECIALS, "bos": "<s>", "eos": "<|im_end|>", "gen_eos": ["</s>", "<|im_end|>"],
        "add_bos": False, "template": CHATML_TEMPLATE, "expected": False, "readme": True,
    },
]

TORCH_DTYPE_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
STORE_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}

# Acceptance thresholds for a seed (see choose_seed): greedy decoding and router top-k choices must
# be far from ties, so that an implementation that is correct to ~1e-3 makes the same choices.
MIN_LOGIT_GAP = 0.05  # top-1 minus top-2 logit at every greedy step
MIN_ROUTER_GAP = 0.01  # k-th minus (k+1)-th router logit, every token, every layer
MIN_TOP5_GAP = 0.002  # consecutive greedy top-5 logprobs: their order is unambiguous at 2e-3
MIN_DISTINCT = 3  # distinct ids among each case's greedy tokens: no degenerate echo loops
MIN_DROP_GAP = 0.002  # token_drop: p gap between the last kept and first dropped token of an expert
MAX_SEED_TRIES = 1000
NEW_TOKENS = 12
GATE_SCALE = 4.0  # router weight std x sqrt(hidden): router logits std ~4, clear top-k choices


def model_config(spec, tok):
    s = tok.specials
    cfg = {
        "architectures": ["MixtralForCausalLM" if spec["arch"] == "mixtral" else "OlmoeForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": s[spec["bos"]],
        "eos_token_id": s[spec["eos"]],
        "hidden_act": "silu",
        "hidden_size": spec["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": spec["intermediate"],
        "max_position_embeddings": spec["max_pos"],
        "model_type": spec["arch"],
        "num_attention_heads": spec["heads"],
        "num_experts_per_tok": spec["top_k"],
        "num_hidden_layers": spec["layers"],
        "num_key_value_heads": spec["kv_heads"],
        "output_router_logits": False,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": spec["rope_theta"],
        "tie_word_embeddings": spec["tied"],
        "torch_dtype": TORCH_DTYPE_NAME[spec["dtype"]],
        "use_cache": True,
        "vocab_size": len(tok),
    }
    if "head_dim" in spec:
        cfg["head_dim"] = spec["head_dim"]
    if spec["arch"] == "mixtral":
        cfg.update({"num_local_experts": spec["experts"], "router_aux_loss_coef": 0.02,
                    "router_jitter_noise": 0.0, "sliding_window": None})
    else:
        cfg.update({"num_experts": spec["experts"], "norm_topk_prob": spec["norm_topk_prob"],
                    "clip_qkv": None, "attention_bias": False, "router_aux_loss_coef": 0.01, "pad_token_id": s[spec["pad"]]})
    return cfg


# ----------------------------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------------------------

def init_weights(spec, vocab, seed):
    """Random weights with scales chosen for decisive outputs: unit-variance embeddings, linear
    layers ~N(0, 1/fan_in) (keeps activations O(1)), a router 3x that (router logits std ~3, so
    top-k choices are clear), an lm_head 2.5x that (logits std ~2.5: peaked, not uniform), norm
    weights 1 +- 0.1. Everything is rounded to the storage dtype before use."""
    g = torch.Generator().manual_seed(seed)
    H, I, E = spec["hidden"], spec["intermediate"], spec["experts"]
    hd = spec.get("head_dim", H // spec["heads"])
    q_out, kv_out = spec["heads"] * hd, spec["kv_heads"] * hd

    def linear(out_f, in_f, scale=1.0):
        return torch.randn(out_f, in_f, generator=g) * (scale / in_f ** 0.5)

    def norm(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    out_scale = spec.get("out_scale", 1.0)  # o_proj / down projections: what layers add to the stream
    w = {"model.embed_tokens.weight": torch.randn(vocab, H, generator=g) * spec.get("embed_std", 1.0)}
    for layer in range(spec["layers"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = norm(H)
        w[p + "post_attention_layernorm.weight"] = norm(H)
        w[p + "self_attn.q_proj.weight"] = linear(q_out, H)
        w[p + "self_attn.k_proj.weight"] = linear(kv_out, H)
        w[p + "self_attn.v_proj.weight"] = linear(kv_out, H)
        w[p + "self_attn.o_proj.weight"] = linear(H, q_out, out_scale)
        if spec["arch"] == "olmoe":
            w[p + "self_attn.q_norm.weight"] = norm(q_out)
            w[p + "self_attn.k_norm.weight"] = norm(kv_out)
            moe, names = p + "mlp.", ("gate_proj", "up_proj", "down_proj")
        else:
            moe, names = p + "block_sparse_moe.", ("w1", "w3", "w2")
        w[moe + "gate.weight"] = linear(E, H, GATE_SCALE)
        for e in range(E):
            w[f"{moe}experts.{e}.{names[0]}.weight"] = linear(I, H)
            w[f"{moe}experts.{e}.{names[1]}.weight"] = linear(I, H)
            w[f"{moe}experts.{e}.{names[2]}.weight"] = linear(H, I, out_scale)
    w["model.norm.weight"] = norm(H)
    if not spec["tied"]:
        w["lm_head.weight"] = linear(vocab, H, 2.5)
    # Round to what will be stored, so that the seed search sees the numbers the files will hold.
    return {k: v.to(STORE_DTYPE[spec["dtype"]]).to(torch.float32) for k, v in w.items()}


def write_weights(spec, weights, out_dir):
    dtype, meta = spec["dtype"], {"format": "pt"}
    if spec["shards"] == 1:
        ref.write_safetensors_file(os.path.join(out_dir, "model.safetensors"), weights, dtype, meta)
        return
    # Split in sorted-name order at byte boundaries, like HF's max_shard_size: a layer's tensors
    # may straddle two shards, which a loader must handle.
    names = sorted(weights)
    elem = 4 if dtype == "F32" else 2
    sizes = [weights[n].numel() * elem for n in names]
    total = sum(sizes)
    n_shards = spec["shards"]
    groups, acc = [[] for _ in range(n_shards)], 0
    for name, size in zip(names, sizes):
        groups[min(n_shards - 1, acc * n_shards // total)].append(name)
        acc += size
    weight_map = {}
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        ref.write_safetensors_file(os.path.join(out_dir, fname), {n: weights[n] for n in group}, dtype, meta)
        weight_map.update({n: fname for n in group})
    write_json(os.path.join(out_dir, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})


# ----------------------------------------------------------------------------------------------
# expected outputs
# ----------------------------------------------------------------------------------------------

def make_prompts(n_regular, lengths, seed):
    """Random non-special token ids; a generator of their own so the seed search leaves them be."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, n_regular, (n,), generator=g).tolist() for n in lengths]


def model_from_weights(spec, config, weights):
    """A ref.Model over in-memory weights (for the seed search, before anything is written)."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    return ref.Model(config=config, weights=weights, arch=config["model_type"], hidden=hidden,
                     layers=config["num_hidden_layers"], heads=heads,
                     kv_heads=config["num_key_value_heads"],
                     head_dim=config.get("head_dim", hidden // heads),
                     experts=spec["experts"], top_k=config["num_experts_per_tok"],
                     eps=config["rms_norm_eps"], rope_theta=float(config["rope_theta"]))


def compute_cases(model, prompts, special_ids):
    """Vanilla expected outputs for each prompt, plus the margins that make them robust."""
    cases, logit_gap, router_gap, top5_gap, emits_special = [], float("inf"), float("inf"), float("inf"), False
    for ids in prompts:
        g = ref.greedy(model, ids, NEW_TOKENS)  # fixed length: never stops at eos
        cases.append({
            "prompt_ids": ids,
            "prompt_logprobs": ref.prompt_logprobs(model, ids),
            "greedy_ids": g["ids"],
            "greedy_logprobs": g["logprobs"],
            "greedy_top5": g["top"],
        })
        logit_gap = min(logit_gap, min(g["margins"]))
        for step in g["top"]:
            top5_gap = min(top5_gap, min(a[1] - b[1] for a, b in zip(step, step[1:])))
        emits_special |= any(i in special_ids for i in g["ids"])
        # Causal attention: the last forward of greedy (prompt + all but the last generated token)
        # routes every token exactly as the earlier, shorter forwards did.
        with torch.no_grad():
            _, trace = ref.forward(model, ids + g["ids"][:-1])
        router_gap = min(router_gap, ref.router_margins(trace, model.top_k))
    stats = {"min_greedy_logit_gap": logit_gap, "min_router_logit_gap": router_gap,
             "min_top5_logprob_gap": top5_gap,
             "min_distinct_greedy_ids": min(len(set(c["greedy_ids"])) for c in cases)}
    return cases, stats, emits_special


def compute_token_drop(model, ids, gamma):
    policy = ref.Policy("token_drop", gamma, "score", False)
    with torch.no_grad():
        _, trace = ref.forward(model, ids, policy)
    case = {
        "prompt_ids": ids,
        "prompt_logprobs": ref.prompt_logprobs(model, ids, policy),
        "vanilla_prompt_logprobs": ref.prompt_logprobs(model, ids),
        "capacity_per_layer": [t["capacity"] for t in trace],
        "dropped_pairs_per_layer": [t["dropped_pairs"] for t in trace],
        "expert_loads_per_layer": [t["loads"] for t in trace],
        "expert_loads_after_drop_per_layer": [t["loads_after"] for t in trace],
    }
    drop_gaps = [t["drop_margin"] for t in trace if t["drop_margin"] is not None]
    stats = {"min_router_logit_gap": ref.router_margins(trace, model.top_k),
             "min_drop_p_gap": min(drop_gaps) if drop_gaps else None,
             "dropped_pairs_per_layer": case["dropped_pairs_per_layer"]}
    return case, policy, stats


def seed_ok(stats, emits_special, td_stats):
    if emits_special or stats["min_greedy_logit_gap"] < MIN_LOGIT_GAP:
        return False
    if stats["min_top5_logprob_gap"] < MIN_TOP5_GAP or stats["min_distinct_greedy_ids"] < MIN_DISTINCT:
        return False
    if stats["min_router_logit_gap"] < MIN_ROUTER_GAP:
        return False
    if td_stats is not None:
        if td_stats["min_router_logit_gap"] < MIN_ROUTER_GAP:
            return False
        # The fixture must actually drop something, and not at a near-tie.
        if td_stats["min_drop_p_gap"] is None or td_stats["min_drop_p_gap"] < MIN_DROP_GAP:
            return False
    return True


def choose_seed(spec, config, tok, prompts, td_prompt):
    """The first seed from spec["seed"] on whose model every greedy step and every router top-k
    choice is clear of ties by the thresholds above."""
    special_ids = set(tok.specials.values())
    for seed in range(spec["seed"], spec["seed"] + MAX_SEED_TRIES):
        weights = init_weights(spec, len(tok), seed)
        if not spec["expected"]:
            return seed, weights, None
        model = model_from_weights(spec, config, weights)
        _, stats, emits_special = compute_cases(model, prompts, special_ids)
        td_stats = compute_token_drop(model, td_prompt, 1.0)[2] if spec.get("token_drop") else None
        if seed_ok(stats, emits_special, td_stats):
            return seed, weights, {**stats, "token_drop": td_stats}
    raise RuntimeError(f"{spec['dir']}: no acceptable seed in {MAX_SEED_TRIES} tries")


# ----------------------------------------------------------------------------------------------
# JSON output (stable, compact enough to diff)
# ----------------------------------------------------------------------------------------------

def rounded(x):
    """Round floats to 6 decimals (tests compare to 2e-3); keeps files short and stable."""
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, list):
        return [rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return x


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def write_expected(path, header, cases):
    """One line per field of each case, so a diff shows which number moved."""
    lines = ["{"]
    for key, value in header.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(rounded(value))},")
    lines.append('  "cases": [')
    for ci, case in enumerate(cases):
        fields = [f"    {json.dumps(k)}: {json.dumps(rounded(v))}" for k, v in case.items()]
        lines.append("   {\n" + ",\n".join(fields) + "\n   }" + ("," if ci + 1 < len(cases) else ""))
    lines.append("  ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def model_readme(spec, seed):
    return f"""# moeserve-tiny-random

A **randomly initialised** Mixtral-architecture checkpoint: MoeServe's default model until a trained
one replaces it. It has never seen any training: it produces meaningless text. It exists so that the
server starts and serves out of the box, quickly, on a CPU.

- architecture: `mixtral`, {spec['layers']} layers, hidden {spec['hidden']}, intermediate {spec['intermediate']},
  {spec['heads']} attention heads / {spec['kv_heads']} KV heads (head_dim {spec['head_dim']}),
  {spec['experts']} experts, top-{spec['top_k']}, max_position_embeddings {spec['max_pos']}
- weights: BF16, one `model.safetensors`; torch seed {seed} (`torch.Generator().manual_seed({seed})`)
- tokenizer: byte-level BPE (256 byte symbols + {NUM_MERGES} merges learned on a built-in paragraph +
  special tokens `<s>`, `</s>`, `<|im_start|>`, `<|im_end|>`), ChatML chat template, eos `<|im_end|>`

Made by (deterministic, byte-identical on every run):

    /usr/bin/python3 scripts/reference/make_fixtures.py

See `scripts/reference/README.md`.
"""


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------

def build(spec, root, tok, log):
    out_dir = os.path.join(root, spec["dir"])
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)  # stale shards from an older layout must not linger
    os.makedirs(out_dir)
    config = model_config(spec, tok)
    n_regular = len(tok.vocab)
    prompts = make_prompts(n_regular, [5, 20, 60], spec["seed"] + 7)
    td_prompt = make_prompts(n_regular, [40], spec["seed"] + 11)[0]

    seed, weights, stats = choose_seed(spec, config, tok, prompts, td_prompt)
    write_weights(spec, weights, out_dir)
    write_json(os.path.join(out_dir, "config.json"), config)
    eos = [tok.specials[s] for s in spec["gen_eos"]]
    write_json(os.path.join(out_dir, "generation_config.json"),
               {"bos_token_id": tok.specials[spec["bos"]], "eos_token_id": eos[0] if len(eos) == 1 else eos})
    write_json(os.path.join(out_dir, "tokenizer.json"), tok.tokenizer_json(spec["bos"], spec["add_bos"]))
    write_json(os.path.join(out_dir, "tokenizer_config.json"),
               tokenizer_config(tok, spec["bos"], spec["eos"], spec["add_bos"], spec["template"],
                                spec["max_pos"], spec.get("pad")))
    if spec.get("readme"):
        with open(os.path.join(out_dir, "README.md"), "w") as f:
            f.write(model_readme(spec, seed))

    # Expected outputs come from the files just written, read back by the reference reader.
    model = ref.load_model(out_dir)
    for name, t in weights.items():
        assert torch.equal(model.weights[name], t), name
    log[spec["dir"]] = {"seed": seed}
    if not spec["expected"]:
        return
    header = {"generator": "scripts/reference/make_fixtures.py", "reference": "scripts/reference/hf_reference.py",
              "policy": {"name": "vanilla"}, "max_new_tokens": NEW_TOKENS, "stop_at_eos": False,
              "seed": seed, "margins": {k: v for k, v in stats.items() if k != "token_drop"}}
    cases, _, _ = compute_cases(model, prompts, set(tok.specials.values()))
    write_expected(os.path.join(out_dir, "expected.json"), header, cases)
    log[spec["dir"]].update(header["margins"])
    write_expected(os.path.join(out_dir, "expected_tokenizer.json"),
                   {"add_special_tokens": False, "note": "ids of tokenizer.json encode(text) with no bos added"},
                   [{"text": t, "ids": tok.encode(t)} for t in TOKENIZER_CASES])
    if spec.get("token_drop"):
        case, policy, td_stats = compute_token_drop(model, td_prompt, 1.0)
        td_header = {"generator": "scripts/reference/make_fixtures.py",
                     "reference": "scripts/reference/hf_reference.py",
                     "policy": policy.to_json(), "batch": "the whole prompt is one batch: T = len(prompt_ids)",
                     "seed": seed, "margins": td_stats}
        write_expected(os.path.join(out_dir, "expected_token_drop.json"), td_header, [case])
        log[spec["dir"]]["token_drop"] = td_stats


def check_tokenizer(tok):
    """Round trips and a look at the merges actually helping."""
    for text in TOKENIZER_CASES + [TRAINING_TEXT]:
        assert tok.decode(tok.encode(text)) == text, text
    n_bytes = len(TRAINING_TEXT.encode("utf-8"))
    assert len(tok.encode(TRAINING_TEXT)) < n_bytes * 0.7, "merges barely compress the training text"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("--only", help="build only the fixture whose folder contains this string")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread: identical float summation order on every run

    merges = learn_merges(TRAINING_TEXT, NUM_MERGES)
    log = {}
    for spec in FIXTURES:
        if args.only and args.only not in spec["dir"]:
            continue
        tok = Tokenizer(merges, spec["specials"])
        check_tokenizer(tok)
        build(spec, args.repo, tok, log)
        print(spec["dir"], json.dumps(rounded(log[spec["dir"]])), flush=True)

    # The SentencePiece tokenizer.model fixture (pure Python, < 1 s); it reuses the Mixtral fixture's
    # config.json and chat template, so it comes last.
    import make_sentencepiece_fixture as spm_fixture
    if not args.only or args.only in spm_fixture.FIXTURE_DIR:
        print(spm_fixture.FIXTURE_DIR, json.dumps(spm_fixture.build(args.repo)), flush=True)


if __name__ == "__main__":
    main()
