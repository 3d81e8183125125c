using MoeServe.Routing;

namespace MoeServe.Cli.Compare;

/// <summary>One row of the comparison: a routing policy with the knobs it runs under.</summary>
/// <param name="Name">Short label for tables and the plot.</param>
/// <param name="Policy">Routing policy of every token of every step and of every task request.</param>
/// <param name="CapacityFactor">gamma; only capacity-aware policies read it.</param>
/// <param name="Routing">The global knobs (strategy, local scope, m, LASER's pool).</param>
/// <param name="Settings">The knobs in words, for the report.</param>
public sealed record CompareConfiguration(string Name, RoutingPolicy Policy, double CapacityFactor, RoutingConfig Routing, string Settings);

/// <summary>
/// The fixed list `compare` runs. Fixed on purpose: the same rows on every model make reports comparable,
/// and each row is one of the seed papers' operating points (token drop at three capacities, expanded drop
/// at the tightest one, LASER at two pool sizes). Vanilla comes first: it is the reference for ratios
/// and for top-1 agreement.
/// </summary>
public static class CompareConfigurations
{
    public const string VanillaName = "vanilla";

    /// <param name="topK">The model's k: expanded_drop's extra candidates m = k (the design's default), stated explicitly.</param>
    public static IReadOnlyList<CompareConfiguration> For(int topK)
    {
        var scoreDrop = RoutingConfig.Default with { Strategy = TokenDropStrategy.Score };
        // local_scope = all: every expert may take extras, as with one device; the evaluator places no devices.
        var expanded = RoutingConfig.Default with { Scope = LocalScope.All, ExtraCandidates = topK, Strategy = TokenDropStrategy.Score };
        RoutingConfig Laser(int pool) => RoutingConfig.Default with { Laser = new LaserParameters(PoolSize: pool, EpsHigh: 0.9) };
        return
        [
            new(VanillaName, RoutingPolicy.Vanilla, 1.0, RoutingConfig.Default, "top-k, native weights"),
            new("token_drop 1.0", RoutingPolicy.TokenDrop, 1.0, scoreDrop, "gamma 1.0, strategy score"),
            new("token_drop 1.5", RoutingPolicy.TokenDrop, 1.5, scoreDrop, "gamma 1.5, strategy score"),
            new("token_drop 2.0", RoutingPolicy.TokenDrop, 2.0, scoreDrop, "gamma 2.0, strategy score"),
            new("expanded_drop 1.0", RoutingPolicy.ExpandedDrop, 1.0, expanded, $"gamma 1.0, local scope all, m = k = {topK}, one device"),
            // A pool c <= k routes exactly as vanilla (design rule 5); the row is kept so every model shows the same list.
            new("laser c=3", RoutingPolicy.Laser, 1.0, Laser(3), "pool c = 3, eps_high 0.9, no eps_low, no capacity"),
            new("laser c=4", RoutingPolicy.Laser, 1.0, Laser(4), "pool c = 4, eps_high 0.9, no eps_low, no capacity"),
        ];
    }
}
