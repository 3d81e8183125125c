using MoeServe.Inference.Model;
using MoeServe.Routing;

namespace MoeServe.Api.Metrics;

/// <summary>
/// The expert loads of the most recent engine steps (layer x expert, in total and per policy), kept as
/// running sums (add the new step, subtract the evicted one), for the imbalance gauge and the
/// load-matrix JSON endpoint, and the expert-parallel devices' pairs per layer with the straggler ratio.
/// Written by the engine loops' threads, read by requests.
/// </summary>
public sealed class LoadWindow(int steps = 256)
{
    private readonly Queue<StepRoutingStats> _recent = new();
    private readonly Dictionary<string, long[][]> _byPolicy = [];
    private long[][] _total = [];
    private long[][] _deviceTotal = [];   // [layer][device] pairs
    private double[] _slowestSum = [];    // [layer] sum over steps of max_d pairs
    private double[] _meanSum = [];       // [layer] sum over steps of mean_d pairs
    private readonly object _lock = new();

    public int Capacity => steps;

    public void Add(StepRoutingStats step)
    {
        lock (_lock)
        {
            if (_total.Length != step.ExpertLoads.Length || _deviceTotal.FirstOrDefault()?.Length != step.Devices)
            {
                _total = Empty(step);
                _deviceTotal = step.DevicePairs.Select(r => new long[r.Length]).ToArray();
                _slowestSum = new double[step.ExpertLoads.Length];
                _meanSum = new double[step.ExpertLoads.Length];
            }
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
            var devices = step.DevicePairs[l];
            for (int d = 0; d < devices.Length; d++) _deviceTotal[l][d] += sign * devices[d];
            _slowestSum[l] += sign * devices.Max();
            _meanSum[l] += sign * devices.Average();
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

    /// <summary>Pairs per expert-parallel device summed over the window: [layer][device] (a copy).</summary>
    public long[][] DeviceSnapshot()
    {
        lock (_lock) return Copy(_deviceTotal);
    }

    /// <summary>
    /// Straggler ratio of one layer over the window: sum over steps of the busiest device's pairs over the sum
    /// of the mean device's pairs. The modelled expert-parallel time of the layer divided by what perfectly
    /// balanced devices would take (1.0: no straggler; 0 without data).
    /// </summary>
    public double StragglerRatio(int layer)
    {
        lock (_lock) return layer < _meanSum.Length && _meanSum[layer] > 0 ? _slowestSum[layer] / _meanSum[layer] : 0;
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
