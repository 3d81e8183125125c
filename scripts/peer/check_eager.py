#!/usr/bin/python3
"""Correctness check of the peer baseline (eager_generate.py, KV-cached) against the reference's
full-recompute greedy decoding (scripts/reference/hf_reference.py).

1. Every fixture with an expected.json (tests/fixtures/*/expected.json): in float32, each case's 12
   KV-cached greedy ids must equal `greedy_ids`, and each chosen token's log-probability must be
   within 2e-3 of `greedy_logprobs` (the tolerance the C# tests use).
2. The benchmark model (models/moeserve-tiny-random, no expected file): the first pseudo-random
   prompt of the benchmark workload (P=64, seed 0), 16 tokens, KV-cached float32 vs
   `hf_reference.greedy` recomputing the whole sequence each step. This is the sequence whose ids
   the benchmark prints as `first_prompt_greedy_ids`.

bfloat16 results are printed for information only: bf16 rounding may legitimately flip a greedy
choice, so they do not fail the check. Exits 1 on any float32 mismatch.

  /usr/bin/python3 scripts/peer/check_eager.py
"""

import glob
import json
import os
import sys

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import eager_generate as eager  # noqa: E402  (also puts scripts/reference on sys.path)
import hf_reference as ref  # noqa: E402

ROOT = os.path.abspath(os.path.join(_HERE, "..", ".."))
LOGPROB_TOLERANCE = 2e-3


def run_case(model, prompt, n):
    rope = eager.rope_tables(model, len(prompt) + n)
    with torch.inference_mode():
        return eager.generate(model, prompt, n, rope, want_logprobs=True)


def check_fixture(folder):
    """Returns the number of float32 failures for one fixture folder."""
    with open(os.path.join(folder, "expected.json")) as f:
        expected = json.load(f)
    n = expected["max_new_tokens"]
    name = os.path.basename(folder)
    failures = 0
    for dtype in (torch.float32, torch.bfloat16):
        model = eager.load(folder, dtype)
        for case in expected["cases"]:
            got = run_case(model, case["prompt_ids"], n)
            same = got["ids"] == case["greedy_ids"]
            diff = max(abs(a - b) for a, b in zip(got["logprobs"], case["greedy_logprobs"])) if same else None
            label = f"{name} {str(dtype)[6:]:8} prompt {len(case['prompt_ids']):2} ids"
            if dtype == torch.float32:
                ok = same and diff <= LOGPROB_TOLERANCE
                failures += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {label}: {'equal' if same else 'DIFFER'}"
                      f"{f', max |logprob diff| {diff:.2e}' if same else ''}")
                if not same:
                    print(f"     expected {case['greedy_ids']}\n     got      {got['ids']}")
            else:
                print(f"info {label}: {'equal' if same else 'differ'}"
                      f"{f', max |logprob diff| {diff:.2e}' if same else ''}")
    return failures


def check_benchmark_model(folder, prompt_tokens=64, seed=0, n=16):
    """KV-cached vs full recompute on the benchmark model's first prompt (float32)."""
    model = eager.load(folder, torch.float32)
    prompt = eager.random_prompts(folder, model.spec.config["vocab_size"], prompt_tokens, 1, seed)[0]
    got = run_case(model, prompt, n)
    want = ref.greedy(model.spec, prompt, n)  # no stop ids: exactly n tokens
    same = got["ids"] == want["ids"]
    diff = max(abs(a - b) for a, b in zip(got["logprobs"], want["logprobs"])) if same else None
    ok = same and diff <= LOGPROB_TOLERANCE
    print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(folder)} float32  prompt {prompt_tokens} "
          f"(seed {seed}) {n} ids vs hf_reference.greedy: {'equal' if same else 'DIFFER'}"
          f"{f', max |logprob diff| {diff:.2e}' if same else ''}")
    print(f"     ids {got['ids']}; smallest top-2 logit gap (reference) {min(want['margins']):.3f}")
    if not same:
        print(f"     expected {want['ids']}\n     got      {got['ids']}")
    return 0 if ok else 1


def main():
    torch.set_num_threads(1)  # the reference's setting; the result must not depend on it anyway
    folders = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(ROOT, "tests/fixtures/*/expected.json")))
    if not folders:
        print("FAIL no tests/fixtures/*/expected.json found")
        return 1
    failures = sum(check_fixture(f) for f in folders)
    bench = os.path.join(ROOT, "models/moeserve-tiny-random")
    if os.path.exists(os.path.join(bench, "config.json")):
        failures += check_benchmark_model(bench)
    print(f"{'PASS' if failures == 0 else 'FAIL'}: {len(folders)} fixtures, {failures} float32 failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
