using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>Deterministic top-k: higher probability first, then lower expert id.</summary>
public static class TopK
{
    /// <param name="scores">[T, E] float32.</param>
    /// <returns>[T, k] values and [T, k] int64 ids.</returns>
    public static (Tensor Values, Tensor Ids) Of(Tensor scores, int k)
    {
        // torch.topk leaves the order of equal values unspecified; a stable descending sort does not.
        var (values, ids) = scores.sort(dim: 1, descending: true, stable: true);
        return (values.narrow(1, 0, k), ids.narrow(1, 0, k));
    }

    /// <summary>The checkpoint's native weights of chosen probabilities.</summary>
    /// <param name="values">[T, k] chosen probabilities.</param>
    /// <returns>[T, k]: renormalised to sum 1 per token when the model does so, else unchanged.</returns>
    public static Tensor NativeWeights(Tensor values, GateSemantics gate) =>
        gate.RenormalizeTopK ? values / values.sum(1, keepdim: true) : values;
}
