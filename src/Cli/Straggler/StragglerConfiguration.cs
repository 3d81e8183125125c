using MoeServe.Routing;

namespace MoeServe.Cli.Straggler;

/// <summary>One routing policy the straggler benchmark runs, with its knobs.</summary>
public sealed record StragglerConfiguration(string Name, RoutingPolicy Policy, double CapacityFactor, RoutingConfig Routing)
{
    public const string VanillaName = "vanilla";

    /// <summary>The seed papers' operating points. expanded_drop takes its extra candidates from the devices
    /// its top-k already use (local scope device), which is what makes it cheap under expert parallelism.</summary>
    public static IReadOnlyList<StragglerConfiguration> For(int topK)
    {
        var score = RoutingConfig.Default with { Strategy = TokenDropStrategy.Score };
        var expanded = RoutingConfig.Default with { Scope = LocalScope.Device, ExtraCandidates = topK, Strategy = TokenDropStrategy.Score };
        return
        [
            new(VanillaName, RoutingPolicy.Vanilla, 1.0, RoutingConfig.Default),
            new("token_drop 1.0", RoutingPolicy.TokenDrop, 1.0, score),
            new("token_drop 1.5", RoutingPolicy.TokenDrop, 1.5, score),
            new("expanded_drop 1.0", RoutingPolicy.ExpandedDrop, 1.0, expanded),
            new("laser c=4", RoutingPolicy.Laser, 1.0, RoutingConfig.Default with { Laser = new LaserParameters(PoolSize: 4, EpsHigh: 0.9) }),
        ];
    }
}
