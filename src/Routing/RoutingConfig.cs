namespace MoeServe.Routing;

/// <summary>Which overflow tokens token_drop keeps at an over-capacity expert.</summary>
public enum TokenDropStrategy
{
    /// <summary>The highest gate probabilities (the default; the paper's "score").</summary>
    Score,
    /// <summary>A seeded random choice.</summary>
    Random,
    /// <summary>The earliest tokens in batch order.</summary>
    First,
    /// <summary>The latest tokens in batch order.</summary>
    Last,
}

/// <summary>Which experts expanded_drop may add as extra candidates.</summary>
public enum LocalScope
{
    /// <summary>Experts on a device that already holds one of the token's top-k experts.</summary>
    Device,
    /// <summary>Every expert.</summary>
    All,
}

/// <summary>LASER's parameters for one layer.</summary>
/// <param name="PoolSize">Candidate pool c (at least k); null means k + 1.</param>
/// <param name="EpsHigh">Top-k probability mass at or above which a token routes as vanilla.</param>
/// <param name="EpsLow">Mass below which the pool is every expert ("load only"); null disables it.</param>
public sealed record LaserParameters(int? PoolSize = null, double EpsHigh = 0.9, double? EpsLow = null);

/// <summary>
/// The knobs of the capacity-aware and load-aware policies that are global (configuration "Routing"),
/// as opposed to the per-request choice of policy and capacity factor.
/// </summary>
public sealed record RoutingConfig
{
    public TokenDropStrategy Strategy { get; init; } = TokenDropStrategy.Score;
    /// <summary>Renormalise a token's surviving weights after drops (denominator clamped at 1e-20).</summary>
    public bool RenormalizeAfterDrop { get; init; }
    /// <summary>Extra candidates m of expanded_drop; null means k.</summary>
    public int? ExtraCandidates { get; init; }
    public LocalScope Scope { get; init; } = LocalScope.Device;
    /// <summary>LASER parameters for layers without an override.</summary>
    public LaserParameters Laser { get; init; } = new();
    /// <summary>Per-layer LASER overrides (layer index to parameters).</summary>
    public IReadOnlyDictionary<int, LaserParameters> LaserLayers { get; init; } = new Dictionary<int, LaserParameters>();
    /// <summary>Enforce capacity on steps where every sequence decodes one token (off by default).</summary>
    public bool ApplyToDecode { get; init; }
    /// <summary>Seed of the random strategy (combined with the layer index).</summary>
    public int Seed { get; init; } = 1234;

    public LaserParameters LaserFor(int layer) => LaserLayers.TryGetValue(layer, out var p) ? p : Laser;

    public static readonly RoutingConfig Default = new();
}
