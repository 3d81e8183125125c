using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>Top-k routing with the checkpoint's own (Hugging Face) semantics.</summary>
public static class VanillaRouting
{
    /// <summary>Chooses the k most probable experts per token.</summary>
    /// <param name="probs">[T, E] float32 gate probabilities (softmax of the router logits).</param>
    /// <param name="gate">k and the renormalisation rule.</param>
    /// <returns>[T, k] int64 expert ids and [T, k] float32 native weights.</returns>
    public static RoutingAssignment Route(Tensor probs, GateSemantics gate)
    {
        RequireProbabilities(probs, gate);
        var (values, ids) = TopK.Of(probs, gate.TopK);
        return new RoutingAssignment(ids, TopK.NativeWeights(values, gate), mayHaveEmptySlots: false);
    }

    internal static void RequireProbabilities(Tensor probs, GateSemantics gate)
    {
        if (probs.dtype != ScalarType.Float32 || probs.dim() != 2 || probs.size(1) != gate.NumExperts)
            throw new ArgumentException($"routing needs float32 [T, {gate.NumExperts}] probabilities, got {probs.dtype} [{string.Join(", ", probs.shape)}]");
    }
}
