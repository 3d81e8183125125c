using System.Globalization;
using System.Text;

namespace MoeServe.Cli.Eval;

/// <summary>Formats an <see cref="EvalResult"/> as the Markdown tables the eval command prints.</summary>
public static class EvalReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Format(EvalResult r)
    {
        var md = new StringBuilder();
        var m = r.Model;
        md.AppendLine($"## MoeServe eval: {Path.GetFileName(Path.TrimEndingDirectorySeparator(m.Dir))}, policy {PolicyLabel(r)}");
        md.AppendLine();
        md.AppendLine($"- model: `{RepositoryRoot.Display(m.Dir)}` ({m.ModelType}, {m.Layers} layers, {m.Experts} experts top-{m.ExpertsPerToken}, " +
                      $"vocab {m.Vocab}), {m.Dtype} on {m.Device}, context {m.ContextTokens} tokens");
        md.AppendLine($"- data: `{RepositoryRoot.Display(r.DataDir)}`; at most {(r.MaxDocs?.ToString(Inv) ?? "all")} documents / items per domain; " +
                      $"{r.BatchDocs} documents (at most {r.MaxBatchTokens} tokens) per forward pass; runtime {r.Seconds:F1} s");
        foreach (var note in r.Notes) md.AppendLine($"- note: {note}");
        md.AppendLine();
        Perplexity(md, r);
        Tasks(md, r);
        Loads(md, r);
        return md.ToString();
    }

    private static void Perplexity(StringBuilder md, EvalResult r)
    {
        md.AppendLine("### Held-out perplexity");
        md.AppendLine();
        md.AppendLine("| domain | docs | tokens | truncated | NLL nats/token | perplexity | ppl, mixed batches | unigram ppl | ppl / unigram |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var p in r.Perplexity.Append(r.OverallPerplexity))
        {
            string name = p == r.OverallPerplexity ? "**overall**" : p.Domain;
            md.AppendLine(string.Create(Inv, $"| {name} | {p.Documents} | {p.Tokens} | {p.Truncated} | {p.Nll:F4} | {p.Perplexity:F2} | " +
                                             $"{p.MixedBatchPerplexity:F2} | {p.UnigramPerplexity:F2} | {p.RatioToUnigram:F3} |"));
        }
        md.AppendLine();
        var u = r.Unigram;
        md.AppendLine(string.Create(Inv, $"- tokens = predicted tokens (every token of a document after its first, given its prefix" +
            $"{(r.Model.AppendsEndOfText ? ", the appended <|endoftext|> included" : "")}); perplexity = exp(mean NLL); overall pools all domains' tokens."));
        md.AppendLine(string.Create(Inv, $"- unigram baseline: add-one smoothed token frequencies of {u.TrainDocuments} train/ documents ({u.TrainTokens} tokens, " +
            $"{u.DistinctTokens} of {u.Vocab} vocabulary entries seen), scored on the same tokens. A uniform model would score {u.Vocab}."));
        md.AppendLine("- mixed batches hold documents of every domain interleaved; under a batch-independent policy (vanilla) their perplexity equals the single-domain one up to float rounding.");
        md.AppendLine();
    }

    private static void Tasks(StringBuilder md, EvalResult r)
    {
        md.AppendLine("### Task exact match (greedy, chat template)");
        md.AppendLine();
        if (r.Tasks.Count == 0)
        {
            md.AppendLine("No tasks/*.jsonl in the data folder.");
            md.AppendLine();
            return;
        }
        md.AppendLine("| family | items | correct | accuracy | baseline | baseline answer | distinct answers | reply tokens |");
        md.AppendLine("|---|---:|---:|---:|---:|---|---:|---:|");
        foreach (var t in r.Tasks)
            md.AppendLine(string.Create(Inv, $"| {t.Family} | {t.Items} | {t.Correct} | {t.Accuracy:P1} | {t.Baseline:P1} | " +
                                             $"`{Cell(t.BaselineAnswer)}` ({t.BaselineSource}) | {t.DistinctAnswers} | {t.MeanReplyTokens:F1} |"));
        md.AppendLine();
        md.AppendLine("- baseline = accuracy of always giving the most frequent answer of the family's training conversations " +
                      "(\"items\": of the items themselves, when there are none): about 0 for open answers such as sums, the majority rate for yes/no.");
        md.AppendLine("- reply tokens = mean generated tokens per item, EOS included (\"length\" = cut off at the limit).");
        foreach (var t in r.Tasks.Where(t => t.Failures.Count > 0))
        {
            md.AppendLine($"- {t.Family} failures:");
            foreach (var f in t.Failures)
                md.AppendLine($"  - `{Cell(f.Question)}` expected `{Cell(f.Expected)}`, got `{Cell(f.Reply)}` ({f.FinishReason})");
        }
        md.AppendLine();
    }

    private static void Loads(StringBuilder md, EvalResult r)
    {
        var loads = r.ExpertLoad;
        md.AppendLine($"### Expert load, policy {PolicyLabel(r)}");
        md.AppendLine();
        string devHeader = string.Concat(loads.DeviceCounts.Select(d => $" I_dev D={d} mean / max |"));
        md.AppendLine($"| batches | steps | mean tokens/step | I_agg | MaxVio_agg | max I | dropped % | rerouted % |{devHeader}");
        md.AppendLine($"|---|---:|---:|---:|---:|---:|---:|---:|{string.Concat(loads.DeviceCounts.Select(_ => "---:|"))}");
        foreach (var g in loads.Groups)
            md.AppendLine(string.Create(Inv, $"| {GroupLabel(g.Name)} | {g.Batches} | {g.MeanBatchTokens:F0} | {g.ImbalanceAgg:F3} | {g.MaxVioAgg:F3} | {g.MaxImbalance:F3} | " +
                                             $"{100 * g.DroppedShare:F2} | {100 * g.ReroutedShare:F2} |") +
                          string.Concat(g.Devices.Select(d => string.Create(Inv, $" {d.Mean:F3} / {d.Max:F3} |"))));
        md.AppendLine();
        md.AppendLine("- per layer and step: I = max_e n_e / mean_e n_e (n_e = token-expert pairs of expert e), MaxVio = I - 1; " +
                      "I_agg = mean of I over layers and steps; I_dev = max_d N_d / mean_d N_d with experts in equal contiguous blocks per device; " +
                      "dropped / rerouted % = share of the T k pairs per layer that vanilla would route.");
        md.AppendLine();

        var single = loads.Groups.First(g => g.Name == Evaluator.SingleGroup);
        var mixed = loads.Groups.First(g => g.Name == Evaluator.MixedGroup);
        md.AppendLine("Per layer (I over steps: mean / median / max; I_dev: mean over steps):");
        md.AppendLine();
        string devCols = string.Concat(loads.DeviceCounts.Select(d => $" single I_dev D={d} | mixed I_dev D={d} |"));
        md.AppendLine($"| layer | single I mean | median | max | mixed I mean | median | max |{devCols}");
        md.AppendLine($"|---:|---:|---:|---:|---:|---:|---:|{string.Concat(loads.DeviceCounts.Select(_ => "---:|---:|"))}");
        for (int l = 0; l < single.Layers.Count; l++)
        {
            var s = single.Layers[l];
            var x = mixed.Layers[l];
            md.Append(string.Create(Inv, $"| {l} | {s.MeanImbalance:F3} | {s.MedianImbalance:F3} | {s.MaxImbalance:F3} | {x.MeanImbalance:F3} | {x.MedianImbalance:F3} | {x.MaxImbalance:F3} |"));
            for (int d = 0; d < loads.DeviceCounts.Count; d++)
                md.Append(string.Create(Inv, $" {s.Devices[d].Mean:F3} | {x.Devices[d].Mean:F3} |"));
            md.AppendLine();
        }
        md.AppendLine();

        md.AppendLine("Share of each layer's token-expert pairs per expert, % (uniform = " +
                      string.Create(Inv, $"{100.0 / r.Model.Experts:F1}") + "%):");
        foreach (var g in loads.Groups.Where(g => g.Name != Evaluator.SingleGroup))
        {
            md.AppendLine();
            md.AppendLine($"{GroupLabel(g.Name)}:");
            md.AppendLine();
            md.AppendLine("| layer |" + string.Concat(Enumerable.Range(0, r.Model.Experts).Select(e => $" e{e} |")));
            md.AppendLine("|---:|" + string.Concat(Enumerable.Range(0, r.Model.Experts).Select(_ => "---:|")));
            for (int l = 0; l < g.ExpertShare.Length; l++)
                md.AppendLine($"| {l} |" + string.Concat(g.ExpertShare[l].Select(s => string.Create(Inv, $" {100 * s:F1} |"))));
        }
        md.AppendLine();
    }

    /// <summary>"token_drop (capacity factor 1.25)"; the factor only where the policy has a capacity.</summary>
    public static string PolicyLabel(EvalResult r) =>
        r.Policy is "token_drop" or "expanded_drop" ? string.Create(Inv, $"{r.Policy} (capacity factor {r.CapacityFactor:0.###})") : r.Policy;

    /// <summary>"domain:prose" -> "prose", for tables.</summary>
    public static string GroupLabel(string group) => group switch
    {
        Evaluator.SingleGroup => "single-domain (all)",
        Evaluator.MixedGroup => "mixed",
        _ when group.StartsWith("domain:", StringComparison.Ordinal) => group["domain:".Length..],
        _ => group,
    };

    /// <summary>Text safe inside a Markdown table cell or inline code: one line, no pipes or backticks, not too long.</summary>
    private static string Cell(string text)
    {
        var s = new string(text.Replace("\r", "").Replace("\n", "⏎").Replace("|", "¦").Replace("`", "'")
            .Select(c => char.IsControl(c) ? '·' : c).ToArray()); // a random model emits raw control bytes
        return s.Length > 80 ? s[..77] + "..." : s;
    }
}
