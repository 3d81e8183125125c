using System.Globalization;
using System.Text;

namespace MoeServe.Cli.Compare;

/// <summary>
/// The comparison as Markdown: one main table, one row per configuration, balance then quality then
/// ratios then routing time; then perplexity per domain and accuracy per task family, which the main
/// table only summarises. NaN (no tasks, no placeable device count) prints as "n/a".
/// </summary>
public static class CompareTable
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Format(CompareReport r)
    {
        var md = new StringBuilder();
        var m = r.Model;
        md.AppendLine($"## MoeServe routing comparison: {Path.GetFileName(Path.TrimEndingDirectorySeparator(m.Dir))}");
        md.AppendLine();
        md.AppendLine($"- model: `{RepositoryRoot.Display(m.Dir)}` ({m.ModelType}, {m.Layers} layers, {m.Experts} experts top-{m.ExpertsPerToken}), {m.Dtype} on {m.Device}");
        md.AppendLine(string.Create(Inv, $"- data: `{RepositoryRoot.Display(r.DataDir)}`, the same inputs for every row: held-out documents " +
            $"{List(r.Documents)}; task items {List(r.TaskItems)}; {r.BatchDocs} documents per forward pass; runtime {r.Seconds:F1} s"));
        foreach (var note in r.Notes) md.AppendLine($"- note: {note}");
        md.AppendLine();
        md.Append(MainTable(r.Rows, r.DeviceCounts));
        md.AppendLine();
        md.AppendLine("- balance (I_agg = mean over layers and steps of max/mean expert load, max I, MaxVio_agg = I_agg - 1, I_dev = max/mean device load " +
                      "with experts in equal contiguous blocks, mean over layers and steps) and quality (perplexity, top-1) come from the same forward passes: " +
                      "the held-out documents of all domains interleaved into mixed batches. Task accuracy: greedy replies through the engine, mean over families.");
        md.AppendLine("- dropped / rerouted % = token-expert pairs dropped / sent outside the token's top-k, over the pairs vanilla routes (T k per layer).");
        md.AppendLine("- top-1 agree = held-out positions whose argmax next token equals vanilla's on the same inputs. I_agg ratio = vanilla I_agg / the row's (above 1: better balanced); " +
                      "ppl change = the row's perplexity against vanilla's (positive: worse).");
        md.AppendLine(string.Create(Inv, $"- route µs = median of {r.RoutingCalls} `LayerRouter.Route` calls (one layer, one step) on synthetic fp32 [T, {m.Experts}] probabilities, " +
            $"same process, {m.Device}: {string.Join("; ", r.RoutingInputs.Select(Describe))}. " +
            $"On decode-only steps capacity is off (apply_to_decode false), as in the server."));
        md.AppendLine();
        md.Append(ValueTable("Perplexity per domain (mixed batches)", r.Rows, row => row.DomainPerplexity, row => row.Perplexity, "overall", "F2"));
        md.Append(ValueTable("Task exact-match accuracy per family, %", r.Rows, row => row.FamilyAccuracy.Select(v => v with { Value = 100 * v.Value }).ToList(),
            row => 100 * row.TaskAccuracy, "mean", "F1"));
        return md.ToString();
    }

    /// <summary>The main table: one row per configuration.</summary>
    public static string MainTable(IReadOnlyList<CompareRow> rows, IReadOnlyList<int> deviceCounts)
    {
        var md = new StringBuilder();
        md.AppendLine("| configuration | I_agg | max I | MaxVio_agg | " + string.Concat(deviceCounts.Select(d => $"I_dev {d} dev | ")) +
                      "dropped % | rerouted % | ppl | task acc % | top-1 agree % | I_agg ratio (vanilla/policy) | ppl change % | route µs T=16 | route µs T=512 |");
        md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", 12 + deviceCounts.Count)));
        foreach (var r in rows)
        {
            var cells = new List<string> { r.Name, Num(r.ImbalanceAgg, "F3"), Num(r.MaxImbalance, "F3"), Num(r.MaxVioAgg, "F3") };
            cells.AddRange(deviceCounts.Select(d => Num(r.DeviceImbalance.FirstOrDefault(x => x.Devices == d)?.Mean ?? double.NaN, "F3")));
            cells.AddRange(
            [
                Num(100 * r.DroppedShare, "F2"), Num(100 * r.ReroutedShare, "F2"), Num(r.Perplexity, "F2"), Num(100 * r.TaskAccuracy, "F1"),
                Num(100 * r.Top1Agreement, "F2"), Num(r.ImbalanceRatio, "F3"), Num(r.PerplexityChangePercent, "+0.00;-0.00;0.00"),
                Num(r.Timing?.DecodeMicros ?? double.NaN, "F1"), Num(r.Timing?.PrefillMicros ?? double.NaN, "F1"),
            ]);
            md.AppendLine("| " + string.Join(" | ", cells) + " |");
        }
        return md.ToString();
    }

    /// <summary>Rows = configurations, columns = the named values of the first row (domains or families), then a summary column.</summary>
    private static string ValueTable(string title, IReadOnlyList<CompareRow> rows, Func<CompareRow, IReadOnlyList<NamedValue>> values,
        Func<CompareRow, double> summary, string summaryName, string format)
    {
        var md = new StringBuilder();
        md.AppendLine($"### {title}");
        md.AppendLine();
        var names = rows.Count == 0 ? [] : values(rows[0]).Select(v => v.Name).ToList();
        if (names.Count == 0)
        {
            md.AppendLine("None in the data folder.");
            md.AppendLine();
            return md.ToString();
        }
        md.AppendLine("| configuration | " + string.Join(" | ", names) + $" | {summaryName} |");
        md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", names.Count + 1)));
        foreach (var r in rows)
        {
            var byName = values(r).ToDictionary(v => v.Name, v => v.Value);
            md.AppendLine($"| {r.Name} | " + string.Join(" | ", names.Select(n => Num(byName.GetValueOrDefault(n, double.NaN), format))) +
                          $" | {Num(summary(r), format)} |");
        }
        md.AppendLine();
        return md.ToString();
    }

    /// <summary>A number for a cell; NaN (nothing to measure) as "n/a".</summary>
    public static string Num(double value, string format) => double.IsNaN(value) ? "n/a" : value.ToString(format, Inv);

    private static string List(IReadOnlyList<NamedValue> values) =>
        values.Count == 0 ? "none" : string.Join(", ", values.Select(v => string.Create(Inv, $"{v.Name} {v.Value:0}")));

    private static string Describe(TimedInput i) => string.Create(Inv,
        $"T = {i.Tokens} ({(i.DecodeOnly ? "decode-only" : "prefill")} step), mean top-k mass {i.MeanTopKMass:F2}, {100 * i.ShareBelowEpsHigh:F0}% of tokens below 0.9");
}
