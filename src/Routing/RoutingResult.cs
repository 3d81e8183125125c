namespace MoeServe.Routing;

/// <summary>
/// A layer's routing decision plus what it changed relative to vanilla top-k: per token (to report to
/// each request) and per expert and policy (for metrics).
/// </summary>
public sealed class RoutingResult(RoutingAssignment assignment, int tokens, int experts) : IDisposable
{
    /// <summary>Expert ids and weights, [T, S].</summary>
    public RoutingAssignment Assignment { get; private set; } = assignment;

    /// <summary>Sets the assignment once the counts have been gathered alongside it.</summary>
    internal RoutingResult WithAssignment(RoutingAssignment assignment)
    {
        Assignment = assignment;
        return this;
    }

    /// <summary>[T] top-k pairs of each token that were dropped.</summary>
    public long[] DroppedPerToken { get; } = new long[tokens];

    /// <summary>[T] pairs of each token placed on an expert outside its vanilla top-k.</summary>
    public long[] ReroutedPerToken { get; } = new long[tokens];

    /// <summary>Per policy, [E] pairs dropped at each (original) expert.</summary>
    public Dictionary<RoutingPolicy, long[]> DroppedPerExpert { get; } = [];

    /// <summary>Per policy, [E] pairs rerouted to each (destination) expert.</summary>
    public Dictionary<RoutingPolicy, long[]> ReroutedPerExpert { get; } = [];

    public int Experts { get; } = experts;

    internal void CountDropped(RoutingPolicy policy, int token, long expert)
    {
        DroppedPerToken[token]++;
        (DroppedPerExpert.TryGetValue(policy, out var a) ? a : DroppedPerExpert[policy] = new long[Experts])[expert]++;
    }

    internal void CountRerouted(RoutingPolicy policy, int token, long expert)
    {
        ReroutedPerToken[token]++;
        (ReroutedPerExpert.TryGetValue(policy, out var a) ? a : ReroutedPerExpert[policy] = new long[Experts])[expert]++;
    }

    public void Dispose() => Assignment.Dispose();
}
