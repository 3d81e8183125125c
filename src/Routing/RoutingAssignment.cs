using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>
/// The result of routing one layer's flat batch: for each token a fixed number of slots S, each an
/// expert id and a weight. Unused or dropped slots hold expert id -1 and weight 0, so every policy
/// returns the same shape whatever it decided.
/// </summary>
public sealed class RoutingAssignment : IDisposable
{
    /// <param name="expertIds">[T, S] int64, -1 marks an empty slot.</param>
    /// <param name="weights">[T, S] float32, 0 on empty slots.</param>
    /// <param name="mayHaveEmptySlots">False when every slot holds an expert (vanilla), so dispatch can skip filtering.</param>
    public RoutingAssignment(Tensor expertIds, Tensor weights, bool mayHaveEmptySlots = true)
    {
        MayHaveEmptySlots = mayHaveEmptySlots;
        if (expertIds.dtype != ScalarType.Int64) throw new ArgumentException("expert ids must be int64", nameof(expertIds));
        if (weights.dtype != ScalarType.Float32) throw new ArgumentException("weights must be float32", nameof(weights));
        // size(), not shape: shape leaves a finalizable object per read (see HostArrays).
        if (expertIds.dim() != 2 || weights.dim() != 2 || expertIds.size(0) != weights.size(0) || expertIds.size(1) != weights.size(1))
            throw new ArgumentException($"ids {string.Join('x', expertIds.shape)} and weights {string.Join('x', weights.shape)} must both be [T, S]");
        ExpertIds = expertIds;
        Weights = weights;
    }

    public bool MayHaveEmptySlots { get; }

    /// <summary>[T, S] int64.</summary>
    public Tensor ExpertIds { get; }

    /// <summary>[T, S] float32.</summary>
    public Tensor Weights { get; }

    /// <summary>Moves both tensors out of the current dispose scope (they outlive the layer call).</summary>
    public RoutingAssignment MoveToOuterDisposeScope()
    {
        ExpertIds.MoveToOuterDisposeScope();
        Weights.MoveToOuterDisposeScope();
        return this;
    }

    public void Dispose()
    {
        ExpertIds.Dispose();
        Weights.Dispose();
    }
}
