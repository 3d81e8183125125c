using System.Globalization;
using System.Text;

namespace MoeServe.Cli.Straggler;

/// <summary>The straggler benchmark as Markdown: one table per device count, then how to read it.</summary>
public static class StragglerTable
{
    public static string Format(StragglerReport report)
    {
        var inv = CultureInfo.InvariantCulture;
        var s = report.Settings;
        var m = report.Machine;
        var md = new StringBuilder();
        md.AppendLine($"## Expert parallelism: straggler benchmark ({Path.GetFileName(Path.TrimEndingDirectorySeparator(report.ModelDir))})");
        md.AppendLine();
        md.AppendLine($"- model: `{RepositoryRoot.Display(report.ModelDir)}`, fp32; data: `{RepositoryRoot.Display(s.DataDir)}` held-out text of {string.Join(", ", report.Domains)}");
        md.AppendLine($"- workload: {s.Batches} mixed-domain batches (engine steps) of {s.BatchWindows} windows x {s.WindowTokens} tokens = T {report.BatchTokens}, " +
                      $"windows taken round-robin over the domains; load-aware placement computed from {s.Batches} other batches' vanilla loads; " +
                      $"numbers per step (summed over the MoE layers); {s.Repeats} repeats: each device's time per layer and batch is its median over the repeats before the slowest device is taken, the wall time the median of the repeats' totals");
        md.AppendLine($"- machine: {m.LogicalCores} logical cores, {m.CpuModel}; TorchSharp {m.TorchSharpVersion}, libtorch {m.LibTorchVersion}, intra-op threads {m.TorchThreads}; " +
                      $"virtual devices are CPU worker threads; {report.Seconds:F0} s");
        md.AppendLine();
        foreach (var group in report.Rows.GroupBy(r => r.Devices))
        {
            md.AppendLine($"### {group.Key} devices");
            md.AppendLine();
            md.AppendLine("| placement | policy | measured wall ms | modelled EP ms | speedup (modelled) | speedup (wall) | device work ms | busiest-device pairs | cost-model speedup | mean I_dev | dropped |");
            md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var r in group)
                md.AppendLine(string.Create(inv,
                    $"| {r.Placement} | {r.Policy} | {r.WallMs:F2} | {r.ModelledMs:F2} | {r.ModelledSpeedup:F2}x | {r.WallSpeedup:F2}x | {r.DeviceWorkMs:F2} | " +
                    $"{r.MaxDevicePairs:F0} | {r.CostModelSpeedup:F2}x | {r.MeanDeviceImbalance:F3} | {100 * r.DroppedShare:F1}% |"));
            md.AppendLine();
        }
        md.AppendLine("How to read it:");
        md.AppendLine("- **modelled EP ms**: sum over layers of the slowest device's time, each device's share (copy in, its experts, copy back) timed " +
                      "alone with the devices run in turn: the expert-parallel latency of the layers if every device had its own processor.");
        md.AppendLine("- **measured wall ms**: the same layers with one worker thread per device running at once. Virtual devices share this machine's " +
                      $"{m.LogicalCores} cores, so with more devices than cores the wall time measures the total work more than the slowest device.");
        md.AppendLine("- **cost-model speedup**: a synthetic GPU cluster whose layer latency is the busiest device's token-expert pairs x a per-pair cost " +
                      "(fixed costs ignored), the quantity the papers' layer speedups describe (OLMoE at capacity 1.0: token drop 1.46x, expanded drop 1.36x).");
        md.AppendLine("- speedups are against vanilla with contiguous placement on the same number of devices; **I_dev** = busiest device's pairs / mean device's, " +
                      "per layer and step; **dropped** = dropped pairs / (T x k x layers).");
        md.AppendLine("- placements: contiguous blocks; load_aware = experts packed heaviest first on the least-loaded device (same number per device), " +
                      "from the calibration batches' vanilla loads; load_aware+ = the same with D redundant replicas of the hottest experts " +
                      "(one extra expert's memory per device), each replica taking an even share of its expert's pairs.");
        md.AppendLine("- expanded_drop takes its extra candidates from the devices its top-k already use (local scope device): with 8 devices each holds one " +
                      "expert, so there is no local extra and it routes as token_drop.");
        return md.ToString();
    }
}
