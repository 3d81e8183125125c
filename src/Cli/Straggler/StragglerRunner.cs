using System.Diagnostics;
using MoeServe.Cli.Bench;
using MoeServe.Cli.Eval;
using MoeServe.Inference.Model;
using MoeServe.Inference.Parallel;
using MoeServe.Inference.Tokenization;
using MoeServe.Routing;
using TorchSharp;

namespace MoeServe.Cli.Straggler;

/// <summary>What `moeserve-cli straggler` measures with.</summary>
public sealed record StragglerSettings
{
    public required string ModelDir { get; init; }
    public required string DataDir { get; init; }
    public required IReadOnlyList<int> DeviceCounts { get; init; }
    public int WindowTokens { get; init; } = 64;
    public int BatchWindows { get; init; } = 8;
    public int Batches { get; init; } = 8;
    public int Repeats { get; init; } = 5;
    public int? Threads { get; init; } = 1;
    public Action<string>? Log { get; init; }
}

/// <summary>Everything a report needs: the rows and what they were measured on.</summary>
public sealed record StragglerReport(string ModelDir, StragglerSettings Settings, List<string> Domains, int BatchTokens,
    List<StragglerRow> Rows, MachineInfo Machine, double Seconds);

/// <summary>
/// Runs the shipped model's MoE layers on 2, 4 and 8 virtual devices under each routing policy, on the same
/// mixed-domain batches. Every (devices, placement) pair loads the model twice: once with the devices in turn
/// (each device's share timed alone, for the modelled latency) and once with one worker thread per device
/// (the measured wall time). Configurations alternate batch by batch so the machine's noise spreads over all.
/// </summary>
public sealed class StragglerRunner(StragglerSettings settings)
{
    /// <summary>load_aware+: load-aware with one redundant replica per device for the hottest experts.</summary>
    private static readonly string[] Placements = ["contiguous", "load_aware", "load_aware+"];

    public StragglerReport Run()
    {
        long started = Stopwatch.GetTimestamp();
        var log = settings.Log ?? (_ => { });
        if (settings.Threads is int threads) torch.set_num_threads(threads);
        using var inference = torch.inference_mode();
        using var single = MoeForCausalLM.Load(settings.ModelDir, torch.ScalarType.Float32, torch.CPU);
        var config = single.Config;
        var encoder = new DocumentEncoder(ModelTokenizer.Load(settings.ModelDir, config), config.MaxPositionEmbeddings);
        var inputs = StragglerInputs.Build(EvalData.Open(settings.DataDir), encoder, settings.WindowTokens, settings.BatchWindows, settings.Batches);
        int batchTokens = settings.WindowTokens * settings.BatchWindows;
        log($"{inputs.Measured.Count} measured and {inputs.Calibration.Count} calibration batches of {settings.BatchWindows} x {settings.WindowTokens} tokens over {string.Join(", ", inputs.Domains)}");

        // Load-aware placement from vanilla loads of the calibration batches, never of the measured ones.
        var calibrationLoads = new long[config.NumLayers][];
        for (int l = 0; l < config.NumLayers; l++) calibrationLoads[l] = new long[config.NumExperts];
        using (var scorer = new DocumentScorer(single, batchTokens, settings.BatchWindows))
            foreach (var batch in inputs.Calibration)
            {
                var loads = scorer.Score(batch, RoutingPolicy.Vanilla).ExpertLoads;
                for (int l = 0; l < loads.Length; l++) for (int e = 0; e < loads[l].Length; e++) calibrationLoads[l][e] += loads[l][e];
            }

        var configurations = StragglerConfiguration.For(config.ExpertsPerToken);
        var rows = new List<StragglerRow>();
        foreach (int devices in settings.DeviceCounts)
        {
            foreach (var placementMode in Placements)
            {
                var placement = placementMode switch
                {
                    "load_aware" => ExpertPlacement.LoadAware(calibrationLoads, config.NumExperts, devices),
                    "load_aware+" => ExpertPlacement.LoadAware(calibrationLoads, config.NumExperts, devices, redundantExperts: devices),
                    _ => ExpertPlacement.Contiguous(config.NumLayers, config.NumExperts, devices),
                };
                // Load-aware placements are shown for the policies they compete with: vanilla and token drop at capacity 1.0.
                var measured = placementMode == "contiguous" ? configurations.ToList() : configurations.Take(2).ToList();
                log($"{devices} devices, {placementMode} placement: {measured.Count} policies x {settings.Repeats} repeats ...");
                using var inTurn = MoeForCausalLM.Load(settings.ModelDir, torch.ScalarType.Float32, torch.CPU, _ => ExpertParallelPlan.Virtual(devices, placement, concurrent: false));
                using var atOnce = MoeForCausalLM.Load(settings.ModelDir, torch.ScalarType.Float32, torch.CPU, _ => ExpertParallelPlan.Virtual(devices, placement, concurrent: true));
                using var inTurnScorer = new DocumentScorer(inTurn, batchTokens, settings.BatchWindows);
                using var atOnceScorer = new DocumentScorer(atOnce, batchTokens, settings.BatchWindows);
                // Warm-up: first calls allocate and fill libtorch's caches.
                inTurnScorer.Score(inputs.Measured[0], RoutingPolicy.Vanilla);
                atOnceScorer.Score(inputs.Measured[0], RoutingPolicy.Vanilla);

                // Configurations alternate batch by batch, so the machine's drift (it is shared) reaches all of them alike.
                var samples = measured.Select(_ => new List<StragglerPass>()).ToList();
                for (int repeat = 0; repeat < settings.Repeats; repeat++)
                {
                    var passes = measured.Select(_ => new StragglerPass()).ToList();
                    foreach (var batch in inputs.Measured)
                        for (int c = 0; c < measured.Count; c++)
                            Measure(inTurnScorer, atOnceScorer, measured[c], batch, passes[c]);
                    for (int c = 0; c < measured.Count; c++) samples[c].Add(passes[c]);
                }
                rows.AddRange(measured.Select((c, i) => StragglerPass.Combine(samples[i], devices, placementMode, c.Name, config.ExpertsPerToken)));
            }
        }
        return new StragglerReport(settings.ModelDir, settings, inputs.Domains, batchTokens, WithSpeedups(rows),
            MachineInfo.Collect(), Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    /// <summary>One batch under one configuration, added to <paramref name="pass"/>: what every device did in every layer.</summary>
    private static void Measure(DocumentScorer inTurn, DocumentScorer atOnce, StragglerConfiguration c, List<int[]> batch, StragglerPass pass)
    {
        var score = inTurn.Score(batch, c.Policy, c.CapacityFactor, c.Routing);
        var stats = inTurn.LastRoutingStats!;
        pass.DeviceSeconds.Add(stats.DeviceSeconds.Select(d => (double[])d.Clone()).ToArray());
        pass.DevicePairs.Add(stats.DevicePairs.Select(d => (long[])d.Clone()).ToArray());
        pass.DroppedPairs.Add(score.DroppedPairs);
        pass.BatchTokens.Add(batch.Sum(window => window.Length));
        atOnce.Score(batch, c.Policy, c.CapacityFactor, c.Routing);
        pass.WallSeconds += atOnce.LastRoutingStats!.ExpertWallSeconds.Sum();
    }

    /// <summary>Each row against vanilla with contiguous placement on the same number of devices.</summary>
    private static List<StragglerRow> WithSpeedups(List<StragglerRow> rows) => rows.Select(r =>
    {
        var reference = rows.First(v => v.Devices == r.Devices && v.Placement == "contiguous" && v.Policy == StragglerConfiguration.VanillaName);
        return r with
        {
            ModelledSpeedup = reference.ModelledMs / r.ModelledMs,
            WallSpeedup = reference.WallMs / r.WallMs,
            CostModelSpeedup = reference.MaxDevicePairs / r.MaxDevicePairs,
        };
    }).ToList();
}
