using MoeServe.Inference.Parallel;
using MoeServe.Routing;

namespace MoeServe.Inference.Model;

/// <summary>What routing did in one forward pass, gathered layer by layer for metrics and responses.</summary>
/// <param name="devices">Expert-parallel devices D (1 without expert parallelism).</param>
public sealed class StepRoutingStats(int layers, int experts, int tokens, int devices = 1)
{
    /// <summary>[layer][expert] token-expert pairs executed.</summary>
    public long[][] ExpertLoads { get; } = Enumerable.Range(0, layers).Select(_ => new long[experts]).ToArray();

    /// <summary>[layer] per policy, [expert] pairs executed for tokens of that policy.</summary>
    public Dictionary<RoutingPolicy, long[]>[] LoadsByPolicy { get; } = Enumerable.Range(0, layers).Select(_ => new Dictionary<RoutingPolicy, long[]>()).ToArray();

    /// <summary>[layer] per policy, [expert] pairs dropped at that expert.</summary>
    public Dictionary<RoutingPolicy, long[]>[] Dropped { get; } = Enumerable.Range(0, layers).Select(_ => new Dictionary<RoutingPolicy, long[]>()).ToArray();

    /// <summary>[layer] per policy, [expert] pairs rerouted to that expert.</summary>
    public Dictionary<RoutingPolicy, long[]>[] Rerouted { get; } = Enumerable.Range(0, layers).Select(_ => new Dictionary<RoutingPolicy, long[]>()).ToArray();

    /// <summary>[T] pairs dropped per token, summed over layers.</summary>
    public long[] DroppedPerToken { get; } = new long[tokens];

    /// <summary>[T] pairs rerouted per token, summed over layers.</summary>
    public long[] ReroutedPerToken { get; } = new long[tokens];

    /// <summary>[layer][device] token-expert pairs executed on each expert-parallel device.</summary>
    public long[][] DevicePairs { get; } = Enumerable.Range(0, layers).Select(_ => new long[devices]).ToArray();

    /// <summary>[layer][device] wall seconds of each device's share of the layer's experts.</summary>
    public double[][] DeviceSeconds { get; } = Enumerable.Range(0, layers).Select(_ => new double[devices]).ToArray();

    /// <summary>[layer] wall seconds of the layer's whole expert phase (what the layer waited for).</summary>
    public double[] ExpertWallSeconds { get; } = new double[layers];

    /// <summary>[layer] wall seconds of the routing policy (<see cref="LayerRouter.Route"/>) in the layer.</summary>
    public double[] RoutingSeconds { get; } = new double[layers];

    public int Devices => devices;

    public void AddDeviceTiming(int layer, DeviceStepTiming timing)
    {
        for (int d = 0; d < timing.Pairs.Length; d++)
        {
            DevicePairs[layer][d] += timing.Pairs[d];
            DeviceSeconds[layer][d] += timing.Seconds[d];
        }
        ExpertWallSeconds[layer] += timing.WallSeconds;
    }

    /// <summary>Records the pairs each expert executed, split by the policy of their tokens.</summary>
    /// <param name="counts">[E] pairs executed per expert.</param>
    /// <param name="expertIds">[T * S] the assignment's expert ids (-1 empty), read only when the batch mixes policies.</param>
    public void AddLoads(int layer, long[] counts, BatchRouting routing, Func<long[]> expertIds)
    {
        for (int e = 0; e < counts.Length; e++) ExpertLoads[layer][e] += counts[e];
        if (routing.Uniform is RoutingPolicy uniform)
        {
            LoadsByPolicy[layer][uniform] = (long[])counts.Clone();
            return;
        }
        var ids = expertIds();
        int slots = ids.Length / Math.Max(1, routing.Tokens);
        for (int t = 0; t < routing.Tokens; t++)
        {
            var policy = routing.Policies[t];
            if (!LoadsByPolicy[layer].TryGetValue(policy, out var byExpert)) LoadsByPolicy[layer][policy] = byExpert = new long[counts.Length];
            for (int j = 0; j < slots; j++) if (ids[t * slots + j] >= 0) byExpert[ids[t * slots + j]]++;
        }
    }

    public void Add(int layer, RoutingResult result)
    {
        foreach (var (policy, counts) in result.DroppedPerExpert) Dropped[layer][policy] = counts;
        foreach (var (policy, counts) in result.ReroutedPerExpert) Rerouted[layer][policy] = counts;
        for (int t = 0; t < DroppedPerToken.Length; t++)
        {
            DroppedPerToken[t] += result.DroppedPerToken[t];
            ReroutedPerToken[t] += result.ReroutedPerToken[t];
        }
    }

    /// <summary>The stats of a batch that ran as <paramref name="parts"/>, each a contiguous run of its tokens, in order.</summary>
    /// <remarks>Pair counts and busy seconds add up; a layer's expert-phase wall time is the longest part's, as the
    /// parts ran at the same time.</remarks>
    public static StepRoutingStats Concat(IReadOnlyList<StepRoutingStats> parts)
    {
        var first = parts[0];
        int layers = first.ExpertLoads.Length, experts = first.ExpertLoads[0].Length;
        var all = new StepRoutingStats(layers, experts, parts.Sum(p => p.DroppedPerToken.Length), first.Devices);
        int offset = 0;
        foreach (var part in parts)
        {
            for (int l = 0; l < layers; l++)
            {
                Accumulate(all.ExpertLoads[l], part.ExpertLoads[l]);
                Accumulate(all.DevicePairs[l], part.DevicePairs[l]);
                for (int d = 0; d < part.DeviceSeconds[l].Length; d++) all.DeviceSeconds[l][d] += part.DeviceSeconds[l][d];
                all.ExpertWallSeconds[l] = Math.Max(all.ExpertWallSeconds[l], part.ExpertWallSeconds[l]);
                all.RoutingSeconds[l] += part.RoutingSeconds[l];
                Accumulate(all.LoadsByPolicy[l], part.LoadsByPolicy[l]);
                Accumulate(all.Dropped[l], part.Dropped[l]);
                Accumulate(all.Rerouted[l], part.Rerouted[l]);
            }
            part.DroppedPerToken.CopyTo(all.DroppedPerToken, offset);
            part.ReroutedPerToken.CopyTo(all.ReroutedPerToken, offset);
            offset += part.DroppedPerToken.Length;
        }
        return all;
    }

    private static void Accumulate(long[] total, long[] part)
    {
        for (int i = 0; i < part.Length; i++) total[i] += part[i];
    }

    private static void Accumulate(Dictionary<RoutingPolicy, long[]> total, Dictionary<RoutingPolicy, long[]> part)
    {
        foreach (var (policy, counts) in part)
        {
            if (!total.TryGetValue(policy, out var sum)) total[policy] = sum = new long[counts.Length];
            Accumulate(sum, counts);
        }
    }
}
