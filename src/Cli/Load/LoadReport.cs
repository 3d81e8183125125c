using System.Globalization;
using System.Text;
using MoeServe.Cli.Bench;

namespace MoeServe.Cli.Load;

/// <summary>
/// The load benchmark's Markdown: the table over every round's requests, then the ratios issue #3 judges,
/// taken within each round (same minutes, same machine state) and summarised by their median.
/// </summary>
public static class LoadReport
{
    /// <summary>One line per concurrency level with errors: how many failed, and why (most frequent reasons first).</summary>
    public static string FailureLines(IEnumerable<LevelResult> levels)
    {
        var sb = new StringBuilder();
        foreach (var l in levels.Where(l => l.Errors > 0))
        {
            var reasons = l.Failed.GroupBy(r => r.FailureReason)
                .OrderByDescending(g => g.Count()).Select(g => $"{g.Count()} x {g.Key}");
            sb.AppendLine().Append(Invariant($"- errors at concurrency {l.Concurrency}: {string.Join("; ", reasons)}"));
        }
        return sb.Length == 0 ? "" : sb.AppendLine().ToString();
    }

    public static string Markdown(IReadOnlyList<LoadRound> rounds, string header)
    {
        var pooled = LoadRound.Pool(rounds);
        var sb = new StringBuilder(header).AppendLine().AppendLine();
        sb.AppendLine($"All rounds' requests together ({rounds.Count} round(s)):").AppendLine();
        sb.AppendLine("| concurrency | requests | req/s | output tok/s | TTFT p50 ms | TTFT p99 ms | e2e p50 s | e2e p99 s | ITL p50 ms | ITL p99 ms | 429 | errors |");
        sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var l in pooled)
            sb.AppendLine(Invariant(
                $"| {l.Concurrency} | {l.Completed} | {l.RequestsPerSecond:F2} | {l.OutputTokensPerSecond:F1} | {l.TtftP50 * 1000:F1} | {l.TtftP99 * 1000:F1} | {l.EndToEndP50:F2} | {l.EndToEndP99:F2} | {l.InterTokenP50 * 1000:F2} | {l.InterTokenP99 * 1000:F2} | {l.Rejected} | {l.Errors} |"));
        sb.Append(FailureLines(pooled));
        if (rounds[0].Level(1) is null) return sb.ToString();

        // Per round: each level against concurrency 1, and concurrency 1 against the peer of the same round.
        var higher = rounds[0].Levels.Where(l => l.Concurrency > 1).Select(l => l.Concurrency).ToList();
        bool peers = rounds.Any(r => r.Peer is not null);
        var columns = new List<(string Name, Func<LoadRound, double> Value, string Format)>();
        foreach (int c in higher)
        {
            columns.Add(($"c{c}/c1 output tok/s", r => r.Level(c)!.OutputTokensPerSecond / r.Level(1)!.OutputTokensPerSecond, "x{0:F2}"));
            columns.Add(($"c{c}/c1 ITL p99", r => r.Level(c)!.InterTokenP99 / r.Level(1)!.InterTokenP99, "x{0:F2}"));
        }
        columns.Add(("c1 ITL p99 ms", r => r.Level(1)!.InterTokenP99 * 1000, "{0:F2}"));
        columns.Add(("single-stream decode tok/s", r => r.Level(1)!.StreamDecodeTokensPerSecond, "{0:F1}"));
        if (peers)
        {
            columns.Add(("peer decode tok/s", r => r.Peer?.DecodeTokensPerSecond ?? double.NaN, "{0:F1}"));
            columns.Add(("MoeServe/peer decode", r => r.Peer is null ? double.NaN : r.Level(1)!.StreamDecodeTokensPerSecond / r.Peer.DecodeTokensPerSecond, "x{0:F2}"));
            columns.Add(("MoeServe/peer output tok/s at c1", r => r.Peer is null ? double.NaN : r.Level(1)!.OutputTokensPerSecond / r.Peer.OutputTokensPerSecond, "x{0:F2}"));
        }
        sb.AppendLine().AppendLine("Within each round (the ratios compare figures measured minutes apart), and their median:").AppendLine();
        sb.AppendLine("| round | " + string.Join(" | ", columns.Select(c => c.Name)) + " |");
        sb.AppendLine("|---:|" + string.Concat(columns.Select(_ => "---:|")));
        for (int i = 0; i < rounds.Count; i++)
            sb.AppendLine($"| {i + 1} | " + string.Join(" | ", columns.Select(c => Cell(c.Format, c.Value(rounds[i])))) + " |");
        sb.AppendLine("| **median** | " + string.Join(" | ", columns.Select(c => "**" + Cell(c.Format, Median(rounds.Select(c.Value))) + "**")) + " |");

        var description = rounds.Select(r => r.Peer?.Description).FirstOrDefault(d => d is not null);
        sb.AppendLine();
        sb.AppendLine("- single-stream decode: tokens after the first over the time they took, median over the requests of concurrency 1");
        if (description is not null)
            sb.AppendLine($"- PyTorch eager peer: {description}, the same checkpoint and 8 of the same prompts, one at a time, in process (no HTTP)");
        return sb.ToString();
    }

    private static double Median(IEnumerable<double> values)
    {
        var list = values.Where(v => !double.IsNaN(v)).ToList();
        return list.Count == 0 ? double.NaN : Statistics.Median(list);
    }

    private static string Cell(string format, double value) => double.IsNaN(value) ? "n/a" : string.Format(CultureInfo.InvariantCulture, format, value);

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
