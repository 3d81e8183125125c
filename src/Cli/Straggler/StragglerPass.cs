using MoeServe.Cli.Bench;
using MoeServe.Cli.Eval;

namespace MoeServe.Cli.Straggler;

/// <summary>One pass of the straggler benchmark over the measured batches under one configuration: what every device did.</summary>
public sealed class StragglerPass
{
    /// <summary>[batch][layer][device] seconds of each device's share, timed alone.</summary>
    public List<double[][]> DeviceSeconds { get; } = [];

    /// <summary>[batch][layer][device] token-expert pairs executed.</summary>
    public List<long[][]> DevicePairs { get; } = [];

    /// <summary>Dropped token-expert pairs per batch.</summary>
    public List<long> DroppedPairs { get; } = [];

    /// <summary>Tokens per batch (T).</summary>
    public List<int> BatchTokens { get; } = [];

    /// <summary>Wall seconds of all batches' expert phases with the devices running at once.</summary>
    public double WallSeconds { get; set; }

    /// <summary>
    /// The repeats of one configuration as a row of per-step means. Every device's time in every layer and batch
    /// is first taken as its median over the repeats, and only then is the slowest device picked. The maximum of
    /// single noisy samples inflates evenly spread work the most: among near-equal devices one has almost always
    /// drawn a slow sample (the machine is shared), so balancing policies looked slower than they are. Pairs and
    /// drops are the same in every repeat (routing is deterministic); the wall time is the median of the passes' totals.
    /// </summary>
    public static StragglerRow Combine(List<StragglerPass> passes, int devices, string placement, string policy, int topK)
    {
        var first = passes[0];
        int batches = first.DevicePairs.Count, layers = first.DevicePairs[0].Length;
        double modelled = 0, work = 0, maxPairs = 0, imbalance = 0, dropped = 0;
        for (int b = 0; b < batches; b++)
        {
            for (int l = 0; l < layers; l++)
            {
                var seconds = Enumerable.Range(0, devices).Select(d => Statistics.Median(passes.Select(p => p.DeviceSeconds[b][l][d]).ToList())).ToArray();
                modelled += seconds.Max();
                work += seconds.Sum();
                maxPairs += first.DevicePairs[b][l].Max();
                imbalance += LoadMetrics.Imbalance(first.DevicePairs[b][l]);
            }
            dropped += first.DroppedPairs[b] / (double)(first.BatchTokens[b] * topK * layers);
        }
        double wall = Statistics.Median(passes.Select(p => p.WallSeconds).ToList());
        return new StragglerRow(devices, placement, policy, 1e3 * wall / batches, 1e3 * modelled / batches, 1e3 * work / batches,
            maxPairs / batches, imbalance / (batches * layers), dropped / batches);
    }
}
