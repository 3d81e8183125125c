using System.Globalization;
using System.Text;

namespace MoeServe.Cli.Load;

/// <summary>The load benchmark's Markdown table, with the checks issue #3 asks for computed from it.</summary>
public static class LoadReport
{
    public static string Markdown(IReadOnlyList<LevelResult> levels, PeerResult? peer, string header)
    {
        var sb = new StringBuilder(header).AppendLine().AppendLine();
        sb.AppendLine("| concurrency | requests | req/s | output tok/s | TTFT p50 ms | TTFT p99 ms | e2e p50 s | e2e p99 s | ITL p50 ms | ITL p99 ms | 429 | errors |");
        sb.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var l in levels)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {l.Concurrency} | {l.Completed} | {l.RequestsPerSecond:F2} | {l.OutputTokensPerSecond:F1} | {l.TtftP50 * 1000:F1} | {l.TtftP99 * 1000:F1} | {l.EndToEndP50:F2} | {l.EndToEndP99:F2} | {l.InterTokenP50 * 1000:F2} | {l.InterTokenP99 * 1000:F2} | {l.Rejected} | {l.Errors} |"));
        var one = levels.FirstOrDefault(l => l.Concurrency == 1);
        if (one is not null)
        {
            sb.AppendLine();
            foreach (var l in levels.Where(l => l.Concurrency > 1))
                sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"- concurrency {l.Concurrency} vs 1: output tok/s x{l.OutputTokensPerSecond / one.OutputTokensPerSecond:F2}, ITL p99 x{l.InterTokenP99 / one.InterTokenP99:F2}"));
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"- single-stream decode (concurrency 1, median over requests): {one.StreamDecodeTokensPerSecond:F1} tok/s"));
        }
        if (peer is not null && one is not null)
        {
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"- PyTorch eager peer ({peer.Description}): decode {peer.DecodeTokensPerSecond:F1} tok/s, output {peer.OutputTokensPerSecond:F1} tok/s (one prompt at a time)"));
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"- MoeServe / PyTorch: single-stream decode x{one.StreamDecodeTokensPerSecond / peer.DecodeTokensPerSecond:F2}, " +
                $"output tok/s at concurrency 1 x{one.OutputTokensPerSecond / peer.OutputTokensPerSecond:F2}, " +
                $"best concurrency x{levels.Max(l => l.OutputTokensPerSecond) / peer.OutputTokensPerSecond:F2}"));
        }
        return sb.ToString();
    }
}
