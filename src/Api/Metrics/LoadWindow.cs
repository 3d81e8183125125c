using MoeServe.Inference.Model;
using MoeServe.Routing;

namespace MoeServe.Api.Metrics;

/// <summary>
/// The expert loads of the most recent engine steps (layer x expert, in total and per policy), kept as
/// running sums (add the new step, subtract the evicted one), for the imbalance gauge and the
/// load-matrix JSON endpoint. Written by the engine thread, read by requests.
/// </summary>
public sealed class LoadWindow(int steps = 256)
{
    private readonly Queue<StepRoutingStats> _recent = new();
    private readonly Dictionary<string, long[][]> _byPolicy = [];
    private long[][] _total = [];
    private readonly object _lock = new();

    public int Capacity => steps;

    public void Add(StepRoutingStats step)
    {
        lock (_lock)
        {
            if (_total.Length != step.ExpertLoads.Length) _total = Empty(step);
            Accumulate(step, +1);
            _recent.Enqueue(step);
            while (_recent.Count > steps) Accumulate(_recent.Dequeue(), -1);
        }
    }

    private void Accumulate(StepRoutingStats step, int sign)
    {
        for (int l = 0; l < step.ExpertLoads.Length; l++)
        {
            for (int e = 0; e < step.ExpertLoads[l].Length; e++) _total[l][e] += sign * step.ExpertLoads[l][e];
            foreach (var (policy, loads) in step.LoadsByPolicy[l])
            {
                string name = policy.ToWireName();
                if (!_byPolicy.TryGetValue(name, out var matrix)) _byPolicy[name] = matrix = Empty(step);
                for (int e = 0; e < loads.Length; e++) matrix[l][e] += sign * loads[e];
            }
        }
    }

    private static long[][] Empty(StepRoutingStats step) =>
        step.ExpertLoads.Select(layer => new long[layer.Length]).ToArray();

    /// <summary>Summed loads over the window: [layer][expert], and per policy (copies).</summary>
    public (int Steps, long[][] Total, Dictionary<string, long[][]> ByPolicy) Snapshot()
    {
        lock (_lock)
            return (_recent.Count, Copy(_total), _byPolicy.ToDictionary(kv => kv.Key, kv => Copy(kv.Value)));
    }

    /// <summary>max_e / mean_e of one layer's summed loads over the window (1.0 is perfect balance; 0 without data).</summary>
    public double Imbalance(int layer)
    {
        lock (_lock) return layer < _total.Length ? Imbalance(_total[layer]) : 0;
    }

    public static double Imbalance(long[] loads)
    {
        double mean = loads.Average();
        return mean == 0 ? 0 : loads.Max() / mean;
    }

    private static long[][] Copy(long[][] m) => m.Select(r => (long[])r.Clone()).ToArray();
}
