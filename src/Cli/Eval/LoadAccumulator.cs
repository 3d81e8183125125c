using MoeServe.Cli.Bench;

namespace MoeServe.Cli.Eval;

/// <summary>Collects the expert loads of a group's steps and summarises them into a <see cref="LoadGroup"/>.</summary>
/// <param name="expertsPerToken">k: a step of T tokens routes T k pairs per layer before any drop.</param>
public sealed class LoadAccumulator(string name, int layers, int experts, int expertsPerToken)
{
    private readonly List<long[][]> _steps = [];
    private readonly List<int> _tokens = [];
    private long _dropped, _rerouted;

    public string Name => name;

    /// <param name="loads">[layer][expert] pairs executed in one step.</param>
    /// <param name="tokens">T of that step.</param>
    /// <param name="dropped">Pairs dropped in that step, over all layers.</param>
    /// <param name="rerouted">Pairs rerouted in that step, over all layers.</param>
    public void Add(long[][] loads, int tokens, long dropped = 0, long rerouted = 0)
    {
        if (loads.Length != layers || loads.Any(l => l.Length != experts))
            throw new ArgumentException($"expected loads of [{layers}][{experts}]");
        _steps.Add(loads);
        _tokens.Add(tokens);
        _dropped += dropped;
        _rerouted += rerouted;
    }

    /// <summary>Add a scored batch.</summary>
    public void Add(BatchScore score) => Add(score.ExpertLoads, score.Tokens, score.DroppedPairs, score.ReroutedPairs);

    /// <param name="deviceCounts">D values; those that do not split the experts evenly are left out.</param>
    public LoadGroup Summarise(IReadOnlyList<int> deviceCounts)
    {
        var devices = deviceCounts.Where(d => LoadMetrics.CanPlace(experts, d)).ToArray();
        var layerStats = new List<LayerLoad>(layers);
        var allI = new List<double>();
        var allDev = devices.ToDictionary(d => d, _ => new List<double>());
        var share = new double[layers][];
        for (int l = 0; l < layers; l++)
        {
            // I of this layer in every step.
            var imbalance = _steps.Select(s => LoadMetrics.Imbalance(s[l])).ToArray();
            allI.AddRange(imbalance);
            var layerDevices = new List<DeviceImbalance>();
            foreach (int d in devices)
            {
                var dev = _steps.Select(s => LoadMetrics.DeviceImbalance(s[l], d)).ToArray();
                allDev[d].AddRange(dev);
                layerDevices.Add(new DeviceImbalance(d, Mean(dev), MaxOrNaN(dev)));
            }
            layerStats.Add(new LayerLoad(l, Mean(imbalance), imbalance.Length == 0 ? double.NaN : Statistics.Median(imbalance),
                MaxOrNaN(imbalance), layerDevices));

            var totals = new double[experts];
            foreach (var s in _steps) for (int e = 0; e < experts; e++) totals[e] += s[l][e];
            double sum = totals.Sum();
            share[l] = totals.Select(x => sum == 0 ? 0 : x / sum).ToArray();
        }
        long tokens = _tokens.Sum(x => (long)x);
        double routedPairs = (double)tokens * expertsPerToken * layers; // the vanilla pairs, before any drop
        return new LoadGroup(name, _steps.Count, tokens, _tokens.Count == 0 ? 0 : _tokens.Average(),
            Mean(allI), MaxOrNaN(allI), devices.Select(d => new DeviceImbalance(d, Mean(allDev[d]), MaxOrNaN(allDev[d]))).ToList(),
            layerStats, share, routedPairs == 0 ? 0 : _dropped / routedPairs, routedPairs == 0 ? 0 : _rerouted / routedPairs);
    }

    private static double Mean(IReadOnlyCollection<double> xs) => xs.Count == 0 ? double.NaN : xs.Average();
    private static double MaxOrNaN(IReadOnlyCollection<double> xs) => xs.Count == 0 ? double.NaN : xs.Max();
}
