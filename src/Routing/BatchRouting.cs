namespace MoeServe.Routing;

/// <summary>
/// The routing of one engine step: each token's policy and capacity factor (requests choose their own),
/// the global knobs, and where each expert lives. Built once per step, used by every layer.
/// </summary>
public sealed class BatchRouting
{
    /// <param name="policies">[T] policy of each token of the flat batch.</param>
    /// <param name="capacityFactors">[T] capacity factor of each token (ignored for policies without capacity).</param>
    /// <param name="decodeOnly">Every sequence in the step decodes one token.</param>
    /// <param name="placement">Where each layer's experts live; null means one device.</param>
    public BatchRouting(RoutingPolicy[] policies, double[] capacityFactors, RoutingConfig config, bool decodeOnly, ExpertPlacement? placement = null)
    {
        if (policies.Length != capacityFactors.Length) throw new ArgumentException("one capacity factor per token");
        Policies = policies;
        CapacityFactors = capacityFactors;
        Config = config;
        DecodeOnly = decodeOnly;
        Placement = placement;
        Uniform = policies.Length > 0 && policies.All(p => p == policies[0]) ? policies[0] : null;
    }

    public RoutingPolicy[] Policies { get; }
    public double[] CapacityFactors { get; }
    public RoutingConfig Config { get; }
    public bool DecodeOnly { get; }
    public ExpertPlacement? Placement { get; }

    /// <summary>The policy shared by every token, or null when the batch mixes policies.</summary>
    public RoutingPolicy? Uniform { get; }

    public int Tokens => Policies.Length;

    /// <summary>A batch whose every token routes with <paramref name="policy"/>.</summary>
    public static BatchRouting All(int tokens, RoutingPolicy policy, double capacityFactor = 1.0, RoutingConfig? config = null,
        bool decodeOnly = false, ExpertPlacement? placement = null) =>
        new(Enumerable.Repeat(policy, tokens).ToArray(), Enumerable.Repeat(capacityFactor, tokens).ToArray(),
            config ?? RoutingConfig.Default, decodeOnly, placement);
}
