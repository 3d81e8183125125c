namespace MoeServe.Routing;

/// <summary>The routing policies MoeServe knows (see shared/design/routing-policies.md).</summary>
public enum RoutingPolicy
{
    Vanilla,
    TokenDrop,
    ExpandedDrop,
    Laser,
}

/// <summary>Wire names of <see cref="RoutingPolicy"/> as they appear in headers, bodies and configuration.</summary>
public static class RoutingPolicyNames
{
    public static readonly IReadOnlyList<string> All = ["vanilla", "token_drop", "expanded_drop", "laser"];

    public static string ToWireName(this RoutingPolicy policy) => policy switch
    {
        RoutingPolicy.Vanilla => "vanilla",
        RoutingPolicy.TokenDrop => "token_drop",
        RoutingPolicy.ExpandedDrop => "expanded_drop",
        RoutingPolicy.Laser => "laser",
        _ => throw new ArgumentOutOfRangeException(nameof(policy)),
    };

    public static bool TryParse(string? name, out RoutingPolicy policy)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "vanilla": policy = RoutingPolicy.Vanilla; return true;
            case "token_drop": policy = RoutingPolicy.TokenDrop; return true;
            case "expanded_drop": policy = RoutingPolicy.ExpandedDrop; return true;
            case "laser": policy = RoutingPolicy.Laser; return true;
            default: policy = default; return false;
        }
    }
}
