using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Text.Json;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Parallel;
using MoeServe.Routing;
using TorchSharp;

namespace MoeServe.Api.Hosting;

/// <summary>
/// Expert parallelism (configuration section "ExpertParallel"): which devices hold the experts and how the
/// experts are spread over them. Without a section every expert stays on Model:Device.
/// </summary>
public sealed class ExpertParallelOptions : IValidatableObject
{
    public const string Section = "ExpertParallel";

    /// <summary>CUDA devices ("cuda:0", "cuda:1", ...) holding the experts; needs the CUDA build.</summary>
    public string[] Devices { get; set; } = [];

    /// <summary>Without CUDA: this many virtual CPU ranks, each a worker thread with its own experts (1: off).</summary>
    [Range(1, 256)] public int VirtualDevices { get; set; } = 1;

    /// <summary>contiguous (device d holds experts [d E/D, (d+1) E/D)), explicit (ExpertMap / LayerExpertMaps) or load_aware (LoadProfile).</summary>
    public string Placement { get; set; } = "contiguous";

    /// <summary>explicit: the device of each expert, used for every layer without an entry in LayerExpertMaps.</summary>
    public int[]? ExpertMap { get; set; }

    /// <summary>explicit: per-layer maps keyed by layer index ("ExpertParallel:LayerExpertMaps:2:0").</summary>
    public Dictionary<string, int[]> LayerExpertMaps { get; set; } = [];

    /// <summary>load_aware: a JSON file with recorded loads, "total": [layer][expert] (a saved GET /v1/moe/load response).</summary>
    public string? LoadProfile { get; set; }

    /// <summary>load_aware: extra replicas per layer for the hottest experts (each replica takes an even share of its expert's pairs).</summary>
    [Range(0, 1_000_000)] public int RedundantExperts { get; set; }

    /// <summary>Run the devices at once, one worker thread each (true), or one after another on the engine loop's thread.</summary>
    public bool Concurrent { get; set; } = true;

    /// <summary>Threads that share each CPU device's experts in a layer (busiest expert first to the least-loaded thread); CUDA devices ignore it.</summary>
    [Range(1, 256)] public int ThreadsPerDevice { get; set; } = 1;

    private int DeviceCount => Devices.Length > 0 ? Devices.Length : VirtualDevices;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (Devices.Length > 0 && VirtualDevices > 1)
            yield return new ValidationResult("set either Devices (CUDA) or VirtualDevices (CPU ranks), not both", [nameof(VirtualDevices)]);
        for (int i = 0; i < Devices.Length; i++)
            if (!(Devices[i].StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(Devices[i][5..], NumberStyles.None, CultureInfo.InvariantCulture, out _)))
                yield return new ValidationResult($"'{Devices[i]}' must be cuda:N", [$"{nameof(Devices)}:{i}"]);
        if (Devices.Distinct().Count() != Devices.Length)
            yield return new ValidationResult("lists a device twice", [nameof(Devices)]);
        switch (Placement)
        {
            case "contiguous":
                break;
            case "explicit":
                if (ExpertMap is null && LayerExpertMaps.Count == 0)
                    yield return new ValidationResult("explicit placement needs ExpertMap or LayerExpertMaps", [nameof(ExpertMap)]);
                foreach (var layer in LayerExpertMaps.Keys.Where(k => !int.TryParse(k, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
                    yield return new ValidationResult("keys must be layer indexes (0, 1, ...)", [$"{nameof(LayerExpertMaps)}:{layer}"]);
                break;
            case "load_aware":
                if (string.IsNullOrEmpty(LoadProfile))
                    yield return new ValidationResult("load_aware placement needs a LoadProfile file", [nameof(LoadProfile)]);
                break;
            default:
                yield return new ValidationResult("must be contiguous, explicit or load_aware", [nameof(Placement)]);
                break;
        }
        if (RedundantExperts > 0 && Placement != "load_aware")
            yield return new ValidationResult("redundant experts need the load_aware placement", [nameof(RedundantExperts)]);
        if (ExpertMap?.FirstOrDefault(d => d < 0 || d >= DeviceCount, -1) is int bad && bad != -1)
            yield return new ValidationResult($"device {bad} is outside 0..{DeviceCount - 1}", [nameof(ExpertMap)]);
    }

    /// <summary>The plan for a checkpoint of this shape, or null when every expert stays on the model's device.</summary>
    /// <param name="contentRoot">Base of a relative LoadProfile path.</param>
    /// <exception cref="ArgumentException">The plan does not fit the checkpoint, CUDA is missing, or the load profile is unreadable; the message names the key.</exception>
    public ExpertParallelPlan? ToPlan(ModelConfig config, string contentRoot)
    {
        if (Devices.Length == 0 && VirtualDevices == 1 && Placement == "contiguous") return null;
        int layers = config.NumLayers, experts = config.NumExperts, devices = DeviceCount;
        if (RedundantExperts > experts * (devices - 1))
            throw new ArgumentException($"{Section}:{nameof(RedundantExperts)}: {RedundantExperts} extra replicas do not fit: each of the {experts} experts can have at most one replica per device ({experts * (devices - 1)} extra in all on {devices} devices)");
        ExpertPlacement placement;
        try
        {
            placement = Placement switch
            {
                "explicit" => ExpertPlacement.Explicit(Enumerable.Range(0, layers).Select(l =>
                    LayerExpertMaps.TryGetValue(l.ToString(CultureInfo.InvariantCulture), out var map) ? map
                    : ExpertMap ?? throw new ArgumentException($"layer {l} has no map in LayerExpertMaps and there is no ExpertMap")).ToArray(), experts, devices),
                "load_aware" => ExpertPlacement.LoadAware(ReadLoadProfile(Path.GetFullPath(Path.Combine(contentRoot, LoadProfile!)), layers), experts, devices, RedundantExperts),
                _ => ExpertPlacement.Contiguous(layers, experts, devices),
            };
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{Section}:{(Placement == "load_aware" ? nameof(LoadProfile) : Placement == "explicit" ? nameof(ExpertMap) : nameof(VirtualDevices))}: {e.Message}", e);
        }
        if (Devices.Length == 0) return ExpertParallelPlan.Virtual(devices, placement, Concurrent);
        var resolved = Devices.Select(d => DeviceSelection.Resolve(d, $"{Section}:{nameof(Devices)}")).ToArray();
        return new ExpertParallelPlan(resolved, Devices, placement, Concurrent);
    }

    /// <summary>"total": [layer][expert] from a JSON file (what GET /v1/moe/load returns).</summary>
    private static long[][] ReadLoadProfile(string path, int layers)
    {
        long[][]? total;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            total = document.RootElement.TryGetProperty("total", out var element) ? element.Deserialize<long[][]>() : null;
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException or InvalidOperationException)
        {
            throw new ArgumentException($"cannot read {path}: {e.Message}", e);
        }
        if (total is null) throw new ArgumentException($"{path} has no \"total\": [layer][expert] load matrix");
        if (total.Length != layers) throw new ArgumentException($"{path} has loads of {total.Length} layers, the model has {layers}");
        return total;
    }
}
