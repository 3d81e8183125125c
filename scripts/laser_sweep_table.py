"""Collates the eval JSON files of scripts/laser-sweep.sh into one Markdown table (mixed-domain batches)."""
import json
import pathlib
import sys

work = pathlib.Path(sys.argv[1])
vanilla = json.loads((work / "vanilla.json").read_text())


def summary(result):
    mixed = next(g for g in result["expert_load"]["groups"] if g["name"] == "mixed")
    tasks = result["tasks"]
    accuracy = 100 * sum(t["correct"] for t in tasks) / max(1, sum(t["items"] for t in tasks))
    return mixed["imbalance_agg"], mixed["max_imbalance"], result["overall_perplexity"]["mixed_batch_perplexity"], accuracy


v_iagg, v_max, v_ppl, v_acc = summary(vanilla)
print("## LASER on the shipped model: balance against quality\n")
print("`scripts/laser-sweep.sh`: `moeserve-cli eval --max-docs 50` per row, the same held-out documents and task items; "
      "balance and perplexity of the mixed-domain batches (8 documents per forward pass).\n")
print("| configuration | I_agg | max I | I_agg reduction (vanilla / row) | perplexity | ppl change % | task accuracy % |")
print("|---|---:|---:|---:|---:|---:|---:|")
print(f"| vanilla | {v_iagg:.3f} | {v_max:.3f} | 1.000x | {v_ppl:.2f} | +0.00 | {v_acc:.1f} |")
for path in sorted(work.glob("laser_*.json")):
    _, c, e = path.stem.split("_")
    iagg, mx, ppl, acc = summary(json.loads(path.read_text()))
    print(f"| laser c={c[1:]}, eps_high {e[1:]} | {iagg:.3f} | {mx:.3f} | {v_iagg / iagg:.3f}x | {ppl:.2f} | {100 * (ppl / v_ppl - 1):+.2f} | {acc:.1f} |")
print()
print("- I_agg = mean over layers and steps of max/mean expert load; eps_high = the top-2 probability mass at or above which a "
      "token routes as vanilla (below it the token picks the least-loaded experts of its top-c pool, design rule 4).")
