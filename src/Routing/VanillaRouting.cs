using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>Top-k routing with the checkpoint's own (Hugging Face) semantics.</summary>
public static class VanillaRouting
{
    /// <summary>
    /// Chooses the k most probable experts per token.
    /// </summary>
    /// <param name="probs">[T, E] float32 gate probabilities (softmax of the router logits).</param>
    /// <param name="gate">k and the renormalisation rule.</param>
    /// <returns>[T, k] int64 expert ids and [T, k] float32 native weights.</returns>
    public static RoutingAssignment Route(Tensor probs, GateSemantics gate)
    {
        RequireProbabilities(probs, gate);
        // torch.topk leaves the order of equal values unspecified; a stable descending sort gives the
        // contract's tie rule (higher p first, then lower expert id) on every backend.
        var (sortedValues, sortedIds) = probs.sort(dim: 1, descending: true, stable: true);
        var values = sortedValues.narrow(1, 0, gate.TopK);
        var ids = sortedIds.narrow(1, 0, gate.TopK);
        var weights = gate.RenormalizeTopK ? values / values.sum(1, keepdim: true) : values;
        return new RoutingAssignment(ids, weights, mayHaveEmptySlots: false);
    }

    internal static void RequireProbabilities(Tensor probs, GateSemantics gate)
    {
        if (probs.dtype != ScalarType.Float32 || probs.dim() != 2 || probs.shape[1] != gate.NumExperts)
            throw new ArgumentException($"routing needs float32 [T, {gate.NumExperts}] probabilities, got {probs.dtype} [{string.Join(", ", probs.shape)}]");
    }
}
