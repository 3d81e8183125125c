using MoeServe.Routing;
using System.Globalization;
using System.Text;
using MoeServe.Inference.Checkpoint;
using TorchSharp;

namespace MoeServe.Cli.Bench;

/// <summary>Formats the rows as a Markdown report (printed and optionally written to a file).</summary>
public static class BenchReport
{
    private const double MiB = 1024.0 * 1024.0;

    public static string Format(BenchSettings settings, ModelConfig config, MachineInfo machine,
        IReadOnlyList<BenchRow> rows, long baselineRss, long runPeakRss)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine($"## MoeServe bench: {Path.GetFileName(Path.TrimEndingDirectorySeparator(settings.ModelDir))}");
        md.AppendLine();
        md.AppendLine($"- model: `{RepositoryRoot.Display(settings.ModelDir)}` ({config.ModelType}, {config.NumLayers} layers, hidden {config.HiddenSize}, " +
                      $"ffn {config.IntermediateSize}, {config.NumExperts} experts top-{config.ExpertsPerToken}, " +
                      $"{config.NumHeads}/{config.NumKvHeads} heads, vocab {config.VocabSize})");
        md.AppendLine($"- machine: {machine.LogicalCores} logical cores, {machine.CpuModel}; {machine.Os}; {machine.Runtime}");
        md.AppendLine($"- torch: TorchSharp {machine.TorchSharpVersion}, libtorch {machine.LibTorchVersion}, " +
                      $"intra-op threads {machine.TorchThreads}, inter-op threads {machine.TorchInteropThreads}");
        md.AppendLine($"- workload: prompt {settings.PromptTokens} pseudo-random tokens (one forward pass, fresh cache), then " +
                      $"{settings.DecodeTokens} greedy decode steps; 1 warm-up pass + {settings.Repeats} measured, throughput = median over passes, " +
                      $"step latency percentiles over all {settings.Repeats * settings.DecodeTokens} measured steps");
        md.AppendLine();
        md.AppendLine("| dtype | batch | policy | prompt tokens | prefill tok/s | decode tok/s | decode step p50 ms | p99 ms | routing p50 ms/step | routing share | peak RSS MiB | prefill ΔRSS MiB | decode ΔRSS MiB | KV cache KiB | load ms | other procs CPU % |");
        md.AppendLine("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
        {
            string delta(long bytes) => ProcessMemory.CanResetPeak ? (bytes / MiB).ToString("F1", inv) : "n/a";
            md.AppendLine(string.Create(inv,
                $"| {r.DtypeLabel} | {r.Batch} | {r.Policy.ToWireName()} | {r.PromptTokens} | {r.PrefillTokensPerSecond:F0} | {r.DecodeTokensPerSecond:F1} | " +
                $"{r.DecodeStepP50Ms:F2} | {r.DecodeStepP99Ms:F2} | {r.DecodeRoutingP50Ms:F3} | {100 * r.DecodeRoutingP50Ms / r.DecodeStepP50Ms:F1}% | {r.PeakRssBytes / MiB:F0} | {delta(r.PrefillRssDeltaBytes)} | " +
                $"{delta(r.DecodeRssDeltaBytes)} | {r.KvCacheBytes / 1024.0:F0} | {r.LoadSeconds * 1e3:F0} | {r.OtherProcessesCpuPercent?.ToString("F0", inv) ?? "n/a"} |"));
        }
        md.AppendLine();
        AppendRatios(md, rows);
        AppendPolicyRatios(md, rows, settings.ApplyToDecode);
        md.AppendLine(string.Create(inv, $"- RSS with .NET and libtorch loaded, before any weights: {baselineRss / MiB:F0} MiB; " +
                                         $"process peak RSS over the whole run (model loads included): {runPeakRss / MiB:F0} MiB"));
        md.AppendLine("- peak RSS is process-wide: the row's peak after its warm-up, so it includes the loaded weights, the .NET " +
                      "runtime and whatever earlier rows left in the allocator. ΔRSS = largest rise of the peak over the RSS " +
                      "before one forward pass of that phase (transient activations and cache growth). KV cache = " +
                      "batch × (prompt + decode) × layers × 2 × kv heads × head dim × element size (the cache allocates in 64-token blocks).");
        md.AppendLine("- other procs CPU % = share of all cores used by other processes during the row's measured passes: " +
                      "libtorch's threads wait for each other, so on a shared machine even a few percent shows in the p99 and in the medians.");
        return md.ToString();
    }

    /// <summary>Each policy's decode speed against vanilla's in the same dtype and batch: what routing adds to a decode step.</summary>
    private static void AppendPolicyRatios(StringBuilder md, IReadOnlyList<BenchRow> rows, bool applyToDecode)
    {
        var inv = CultureInfo.InvariantCulture;
        foreach (var r in rows.Where(r => r.Policy != MoeServe.Routing.RoutingPolicy.Vanilla))
        {
            var vanilla = rows.FirstOrDefault(v => v.Dtype == r.Dtype && v.Batch == r.Batch && v.Policy == MoeServe.Routing.RoutingPolicy.Vanilla);
            if (vanilla is null) continue;
            md.AppendLine(string.Create(inv,
                $"- {r.Policy.ToWireName()} vs vanilla, {r.DtypeLabel} batch {r.Batch}: decode step p50 {r.DecodeStepP50Ms / vanilla.DecodeStepP50Ms:F3}×, " +
                $"routing {r.DecodeRoutingP50Ms:F3} vs {vanilla.DecodeRoutingP50Ms:F3} ms per step (+{100 * (r.DecodeRoutingP50Ms - vanilla.DecodeRoutingP50Ms) / vanilla.DecodeStepP50Ms:F1}% of vanilla's step)"));
        }
        if (rows.Any(r => r.Policy != MoeServe.Routing.RoutingPolicy.Vanilla))
            md.AppendLine($"- routing = the policy's LayerRouter.Route time summed over layers, timed inside each decode step; capacity on decode steps: {(applyToDecode ? "enforced (--apply-to-decode)" : "off (the server default), so token_drop and expanded_drop route decode steps as top-k")}");
    }

    /// <summary>bf16 / fp32 speed ratios per batch size, the headline of a dtype comparison.</summary>
    private static void AppendRatios(StringBuilder md, IReadOnlyList<BenchRow> rows)
    {
        var inv = CultureInfo.InvariantCulture;
        foreach (var batch in rows.Select(r => r.Batch).Distinct())
        {
            var fp32 = rows.FirstOrDefault(r => r.Batch == batch && r.Dtype == torch.ScalarType.Float32 && r.Policy == MoeServe.Routing.RoutingPolicy.Vanilla);
            var bf16 = rows.FirstOrDefault(r => r.Batch == batch && r.Dtype == torch.ScalarType.BFloat16 && r.Policy == MoeServe.Routing.RoutingPolicy.Vanilla);
            if (fp32 is null || bf16 is null) continue;
            md.AppendLine(string.Create(inv,
                $"- bf16/fp32 at batch {batch}: prefill {bf16.PrefillTokensPerSecond / fp32.PrefillTokensPerSecond:F2}×, " +
                $"decode {bf16.DecodeTokensPerSecond / fp32.DecodeTokensPerSecond:F2}×, peak RSS {(double)bf16.PeakRssBytes / fp32.PeakRssBytes:F2}×"));
        }
    }
}
