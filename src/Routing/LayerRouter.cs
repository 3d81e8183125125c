using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>
/// The one entry point the MoE layer calls: gate probabilities of a flat batch in, an assignment out.
/// Shared checks live here; each policy implements only its own rule.
/// </summary>
public static class LayerRouter
{
    /// <param name="probs">[T, E] float32 gate probabilities of every token in this engine step.</param>
    /// <param name="gate">The checkpoint's top-k semantics.</param>
    /// <param name="policy">The policy applied to the batch.</param>
    public static RoutingAssignment Route(Tensor probs, GateSemantics gate, RoutingPolicy policy) => policy switch
    {
        RoutingPolicy.Vanilla => VanillaRouting.Route(probs, gate),
        _ => throw new NotSupportedException($"routing policy '{policy.ToWireName()}' is not implemented yet"),
    };
}
