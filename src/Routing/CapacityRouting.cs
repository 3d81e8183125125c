using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>
/// Capacity-Aware Token Drop and Expanded Drop for the tokens of a step that use them, in one pass:
/// every candidate pair (a token's top-k, plus up to m local extras for expanded_drop tokens) competes
/// for its expert's remaining capacity C - n_e, where n_e already counts the step's vanilla and LASER
/// pairs; each expert keeps the best-ranked candidates (strategy score: higher p; vanilla top-k pairs
/// before extras; then lower token index). Tensor formulation: three stable sorts give the ranking,
/// a running count per expert gives each pair's rank.
/// </summary>
/// <remarks>Legend: C capacity-routed tokens, E experts, k top-k, m extras, S = k + m slots, V valid pairs.</remarks>
public static class CapacityRouting
{
    /// <summary>What the capacity pass decided for its tokens.</summary>
    /// <param name="Ids">[C, S] int64 kept experts, -1 where dropped or empty.</param>
    /// <param name="Weights">[C, S] float32, 0 where dropped or empty.</param>
    /// <param name="Candidates">[C, S] int64 candidate experts (-1 for no candidate).</param>
    public sealed record Decision(Tensor Ids, Tensor Weights, Tensor Candidates);

    /// <param name="probs">[C, E] float32 probabilities of the capacity-routed tokens.</param>
    /// <param name="topValues">[C, k] their top-k probabilities; <paramref name="topIds"/> [C, k] the experts.</param>
    /// <param name="nativeWeights">[C, k] their vanilla weights.</param>
    /// <param name="expanded">[C] whether each token is expanded_drop (else token_drop).</param>
    /// <param name="capacity">[C] each token's capacity C_t.</param>
    /// <param name="batchIndex">[C] each token's index in the flat batch (the "first"/"last" strategies and tie order).</param>
    /// <param name="fixedLoads">[E] pairs already placed this step by vanilla and LASER tokens.</param>
    public static Decision Route(Tensor probs, Tensor topValues, Tensor topIds, Tensor nativeWeights, bool[] expanded,
        long[] capacity, long[] batchIndex, long[] fixedLoads, int extras, GateSemantics gate, RoutingConfig config,
        int layer, int[]? expertDevice)
    {
        using var scope = NewDisposeScope();
        long c = probs.shape[0], k = gate.TopK, e = gate.NumExperts, s = k + extras;
        var device = probs.device;
        var expandedRows = torch.tensor(expanded, device: device);                                 // [C] bool

        // Candidates: the top-k, then the best local experts outside it (expanded_drop tokens only).
        Tensor candidates = topIds, candidateP = topValues;
        var valid = torch.ones([c, k], ScalarType.Bool, device);
        if (extras > 0)
        {
            var masked = probs.clone().scatter_(1, topIds, torch.full_like(topValues, Scalars.NegativeInfinity)); // [C, E]
            if (config.Scope == LocalScope.Device && expertDevice is not null && expertDevice.Distinct().Count() > 1)
            {
                var deviceOf = torch.tensor(expertDevice.Select(d => (long)d).ToArray(), device: device); // [E]
                var topDevices = deviceOf.index_select(0, topIds.reshape(-1)).view(c, k, 1);          // [C, k, 1]
                var local = topDevices.eq(deviceOf.view(1, 1, e)).any(1);                            // [C, E]
                masked.masked_fill_(local.logical_not(), Scalars.NegativeInfinity);
            }
            masked.masked_fill_(expandedRows.logical_not().unsqueeze(1), Scalars.NegativeInfinity);
            var (extraP, extraIds) = TopK.Of(masked, extras);                                       // [C, m]
            candidates = torch.cat([topIds, extraIds], 1);
            candidateP = torch.cat([topValues, extraP], 1);
            valid = torch.cat([valid, extraP.isfinite()], 1);                                       // [C, S]
        }
        var original = torch.cat([torch.ones([c, k], ScalarType.Bool, device), torch.zeros([c, s - k], ScalarType.Bool, device)], 1);

        // Flatten the valid pairs in (token, slot) order: the last tie-break, lower token index first.
        var pairs = valid.reshape(-1).nonzero().squeeze(1);                                         // [V]
        using var slotsScalar = s.ToScalar(); // outlives the call (see Scalars)
        var pairToken = pairs.div(slotsScalar, rounding_mode: RoundingMode.floor);                           // [V] row in [0, C)
        var pairExpert = candidates.reshape(-1).index_select(0, pairs);                             // [V]
        var pairOriginal = original.reshape(-1).index_select(0, pairs);                             // [V]
        var key = PriorityKey(config, candidateP.reshape(-1).index_select(0, pairs), pairToken, batchIndex, layer, device);

        // Stable sorts from the least to the most significant key: original before extra, then priority,
        // then grouped by expert.
        var order = pairOriginal.to(ScalarType.Int32).sort(descending: true, stable: true).Indices;
        order = order.index_select(0, key.index_select(0, order).sort(descending: true, stable: true).Indices);
        order = order.index_select(0, pairExpert.index_select(0, order).sort(stable: true).Indices);
        var sortedExpert = pairExpert.index_select(0, order);                                       // [V]
        var counts = sortedExpert.bincount(null, e);                                                // [E]
        var starts = counts.cumsum(0) - counts;                                                     // [E]
        using var pairCount = sortedExpert.shape[0].ToScalar(); // outlives the call (see Scalars)
        var rank = torch.arange(pairCount, ScalarType.Int64, device) - starts.index_select(0, sortedExpert);
        var room = (torch.tensor(capacity, device: device).index_select(0, pairToken.index_select(0, order))
                    - torch.tensor(fixedLoads, device: device).index_select(0, sortedExpert)).clamp_min(Scalars.Zero);
        var keepSorted = rank.lt(room);                                                             // [V]
        var keep = torch.zeros([c * s], ScalarType.Bool, device)
            .index_put_(keepSorted, pairs.index_select(0, order)).view(c, s);                       // [C, S]

        // Weights: native for top-k pairs; p times the token's normalisation factor for extras.
        var factor = gate.RenormalizeTopK ? topValues.sum(1, keepdim: true).reciprocal() : torch.ones([c, 1], device: device);
        var weights = torch.cat([nativeWeights, candidateP.narrow(1, k, s - k).mul(factor)], 1).masked_fill(keep.logical_not(), Scalars.ZeroFloat);
        if (config.RenormalizeAfterDrop)
        {
            // token_drop's option: a token's surviving weights are renormalised to sum 1.
            var renormalized = weights / weights.sum(1, keepdim: true).clamp_min(Scalars.Tiny);
            weights = torch.where(expandedRows.unsqueeze(1), weights, renormalized);
        }
        var ids = candidates.masked_fill(keep.logical_not(), Scalars.MinusOne);
        var allCandidates = candidates.masked_fill(valid.logical_not(), Scalars.MinusOne);
        return new Decision(ids.MoveToOuterDisposeScope(), weights.contiguous().MoveToOuterDisposeScope(), allCandidates.MoveToOuterDisposeScope());
    }

    /// <summary>Larger keys win a place at an over-capacity expert.</summary>
    private static Tensor PriorityKey(RoutingConfig config, Tensor pairP, Tensor pairToken, long[] batchIndex, int layer, Device device)
    {
        if (config.Strategy == TokenDropStrategy.Score) return pairP;
        if (config.Strategy == TokenDropStrategy.Random)
        {
            var generator = new torch.Generator((ulong)(config.Seed * 1000 + layer), device);
            return torch.rand(pairP.shape, generator: generator, device: device);
        }
        var position = torch.tensor(batchIndex, device: device).index_select(0, pairToken).to(ScalarType.Float32);
        return config.Strategy == TokenDropStrategy.First ? -position : position;
    }
}
