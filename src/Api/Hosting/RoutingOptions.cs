using System.ComponentModel.DataAnnotations;
using System.Globalization;
using MoeServe.Routing;

namespace MoeServe.Api.Hosting;

/// <summary>The global routing default (configuration section "Routing"); requests may override policy and capacity.</summary>
public sealed class RoutingOptions : IValidatableObject
{
    public const string Section = "Routing";

    /// <summary>vanilla, token_drop, expanded_drop or laser.</summary>
    public string Policy { get; set; } = "vanilla";

    /// <summary>Capacity factor gamma of capacity-aware policies: C = max(1, ceil(gamma * k * T / E)).</summary>
    [Range(1e-6, 1e6)] public double CapacityFactor { get; set; } = 1.0;

    /// <summary>Which overflow tokens token_drop keeps: score, random, first or last.</summary>
    public string Strategy { get; set; } = "score";

    /// <summary>Renormalise a token's surviving weights after drops.</summary>
    public bool RenormalizeAfterDrop { get; set; }

    /// <summary>Extra candidates m of expanded_drop (default: k).</summary>
    [Range(0, 1024)] public int? ExtraCandidates { get; set; }

    /// <summary>Where expanded_drop's extra candidates may come from: device (experts on the token's devices) or all.</summary>
    public string LocalScope { get; set; } = "device";

    /// <summary>Enforce capacity on decode-only steps too (off: decoding is not degraded).</summary>
    public bool ApplyToDecode { get; set; }

    /// <summary>Seed of the random strategy.</summary>
    public int Seed { get; set; } = 1234;

    /// <summary>LASER parameters of every layer without an override.</summary>
    public LaserOptions Laser { get; set; } = new();

    /// <summary>Per-layer LASER overrides, keyed by layer index ("Routing:LaserLayers:3:PoolSize").</summary>
    public Dictionary<string, LaserOptions> LaserLayers { get; set; } = [];

    public RoutingPolicy ParsedPolicy => RoutingPolicyNames.TryParse(Policy, out var p) ? p : RoutingPolicy.Vanilla;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!RoutingPolicyNames.TryParse(Policy, out _))
            yield return new ValidationResult($"must be one of {string.Join(", ", RoutingPolicyNames.All)}", [nameof(Policy)]);
        if (Strategy is not ("score" or "random" or "first" or "last"))
            yield return new ValidationResult("must be score, random, first or last", [nameof(Strategy)]);
        if (LocalScope is not ("device" or "all"))
            yield return new ValidationResult("must be device or all", [nameof(LocalScope)]);
        foreach (var error in Laser.Errors()) yield return new ValidationResult(error, [$"Laser:{error.Split(':')[0]}"]);
        foreach (var (layer, laser) in LaserLayers)
        {
            if (!int.TryParse(layer, NumberStyles.None, CultureInfo.InvariantCulture, out _))
                yield return new ValidationResult("keys must be layer indexes (0, 1, ...)", [$"LaserLayers:{layer}"]);
            foreach (var error in laser.Errors()) yield return new ValidationResult(error, [$"LaserLayers:{layer}:{error.Split(':')[0]}"]);
        }
    }

    /// <summary>The routing library's view of these settings.</summary>
    public RoutingConfig ToConfig() => new()
    {
        Strategy = Strategy switch { "random" => TokenDropStrategy.Random, "first" => TokenDropStrategy.First, "last" => TokenDropStrategy.Last, _ => TokenDropStrategy.Score },
        RenormalizeAfterDrop = RenormalizeAfterDrop,
        ExtraCandidates = ExtraCandidates,
        Scope = LocalScope == "all" ? Routing.LocalScope.All : Routing.LocalScope.Device,
        ApplyToDecode = ApplyToDecode,
        Seed = Seed,
        Laser = Laser.ToParameters(),
        LaserLayers = LaserLayers.ToDictionary(kv => int.Parse(kv.Key, CultureInfo.InvariantCulture), kv => kv.Value.ToParameters()),
    };
}

/// <summary>LASER's per-layer parameters in configuration.</summary>
public sealed class LaserOptions
{
    /// <summary>Candidate pool size c (at least k; default k + 1).</summary>
    public int? PoolSize { get; set; }

    /// <summary>Top-k probability mass at or above which a token routes as vanilla.</summary>
    public double EpsHigh { get; set; } = 0.9;

    /// <summary>Mass below which every expert is a candidate ("load only"); unset disables it.</summary>
    public double? EpsLow { get; set; }

    /// <summary>Problems as "Key: message" lines.</summary>
    public IEnumerable<string> Errors()
    {
        if (PoolSize is < 1) yield return $"{nameof(PoolSize)}: must be at least 1";
        if (!(EpsHigh > 0 && EpsHigh <= 1)) yield return $"{nameof(EpsHigh)}: must be in (0, 1]";
        if (EpsLow is double low && !(low > 0 && low < EpsHigh)) yield return $"{nameof(EpsLow)}: must be in (0, EpsHigh)";
    }

    public LaserParameters ToParameters() => new(PoolSize, EpsHigh, EpsLow);
}
