using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Routing;

/// <summary>
/// The one entry point the MoE layer calls: gate probabilities of a step's flat batch in, a routing
/// decision out. Requests choose their own policy, so the policy is per token, while capacity and loads
/// are shared by the whole step. Order inside a layer (routing-policies.md, "ours"): vanilla tokens are
/// routed first and always kept; LASER tokens then pick among the loads that leaves, in batch order;
/// token_drop and expanded_drop tokens finally compete for each expert's remaining C - n_e places.
/// On steps where every sequence decodes one token, capacity is not enforced unless ApplyToDecode is set.
/// </summary>
public static class LayerRouter
{
    /// <param name="probs">[T, E] float32 gate probabilities of every token in this engine step.</param>
    /// <param name="gate">The checkpoint's top-k semantics.</param>
    /// <param name="batch">Each token's policy and capacity factor, and the global knobs.</param>
    /// <param name="layer">Layer index (per-layer LASER parameters, the random strategy's seed).</param>
    public static RoutingResult Route(Tensor probs, GateSemantics gate, BatchRouting batch, int layer)
    {
        VanillaRouting.RequireProbabilities(probs, gate);
        int t = (int)probs.size(0), k = gate.TopK, e = gate.NumExperts;
        if (batch.Tokens != t) throw new ArgumentException($"batch routing describes {batch.Tokens} tokens, the layer sees {t}");
        if (batch.Uniform == RoutingPolicy.Vanilla) return new RoutingResult(VanillaRouting.Route(probs, gate), t, e);

        using var scope = NewDisposeScope();
        var (topValues, topIds) = TopK.Of(probs, k);         // [T, k]
        var nativeWeights = TopK.NativeWeights(topValues, gate);
        var topHost = topIds.ToHostArray<long>(); // [T * k]
        var policies = EffectivePolicies(batch);

        // 1. Vanilla tokens: always kept, they count towards every expert's load.
        var loads = new long[e];
        for (int i = 0; i < t; i++)
            if (policies[i] == RoutingPolicy.Vanilla)
                for (int j = 0; j < k; j++) loads[topHost[i * k + j]]++;

        bool anyExpanded = policies.Contains(RoutingPolicy.ExpandedDrop);
        int extras = anyExpanded ? Math.Clamp(batch.Config.ExtraCandidates ?? k, 0, e - k) : 0;
        int slots = k + extras;
        var ids = torch.cat([topIds, torch.full([t, extras], Scalars.MinusOne, device: probs.device)], 1);          // [T, S]
        var weights = torch.cat([nativeWeights, torch.zeros([t, extras], device: probs.device)], 1);  // [T, S]
        var result = new RoutingResult(null!, t, e);
        var resultIds = ids;
        var resultWeights = weights;

        // 2. LASER tokens, in batch order, over the running loads.
        var laserRows = Rows(policies, RoutingPolicy.Laser);
        if (laserRows.Length > 0)
        {
            var rowsTensor = torch.tensor(laserRows, device: probs.device);
            var laserProbs = probs.index_select(0, rowsTensor).ToHostArray<float>();
            var chosen = new long[laserRows.Length * slots];
            var chosenWeights = new float[laserRows.Length * slots];
            Array.Fill(chosen, -1L);
            var parameters = batch.Config.LaserFor(layer);
            for (int r = 0; r < laserRows.Length; r++)
            {
                LaserRouting.RouteToken(laserProbs[(r * e)..((r + 1) * e)], gate, parameters, loads,
                    chosen.AsSpan(r * slots, k), chosenWeights.AsSpan(r * slots, k));
                int token = (int)laserRows[r];
                for (int j = 0; j < k; j++)
                    if (!TopContains(topHost, token, k, chosen[r * slots + j])) result.CountRerouted(RoutingPolicy.Laser, token, chosen[r * slots + j]);
            }
            resultIds = resultIds.index_copy(0, rowsTensor, torch.tensor(chosen, device: probs.device).view(laserRows.Length, slots));
            resultWeights = resultWeights.index_copy(0, rowsTensor, torch.tensor(chosenWeights, device: probs.device).view(laserRows.Length, slots));
        }

        // 3. Capacity-aware tokens compete for what is left of each expert's capacity.
        var capacityRows = Enumerable.Range(0, t).Where(i => policies[i] is RoutingPolicy.TokenDrop or RoutingPolicy.ExpandedDrop)
            .Select(i => (long)i).ToArray();
        if (capacityRows.Length > 0)
        {
            var rowsTensor = torch.tensor(capacityRows, device: probs.device);
            var capacity = capacityRows.Select(i => Capacity.Of(batch.CapacityFactors[i], k, t, e)).ToArray();
            var expanded = capacityRows.Select(i => policies[i] == RoutingPolicy.ExpandedDrop).ToArray();
            var decision = CapacityRouting.Route(probs.index_select(0, rowsTensor), topValues.index_select(0, rowsTensor),
                topIds.index_select(0, rowsTensor), nativeWeights.index_select(0, rowsTensor), expanded, capacity, capacityRows,
                loads, extras, gate, batch.Config, layer, batch.Placement?.Layer(layer));
            resultIds = resultIds.index_copy(0, rowsTensor, decision.Ids);
            resultWeights = resultWeights.index_copy(0, rowsTensor, decision.Weights);
            Account(result, decision, capacityRows, policies, k, slots);
        }
        var assignment = new RoutingAssignment(resultIds.MoveToOuterDisposeScope(), resultWeights.contiguous().MoveToOuterDisposeScope());
        return result.WithAssignment(assignment);
    }

    /// <summary>Whether every token of the batch routes as it would alone (vanilla top-k, after capacity policies
    /// fall back to it on decode steps): then any split of the batch routes exactly as the whole.</summary>
    public static bool RoutesTokensIndependently(BatchRouting batch) => EffectivePolicies(batch).All(p => p == RoutingPolicy.Vanilla);

    /// <summary>Capacity policies act as vanilla on decode-only steps unless ApplyToDecode is set.</summary>
    private static RoutingPolicy[] EffectivePolicies(BatchRouting batch) =>
        batch.DecodeOnly && !batch.Config.ApplyToDecode
            ? batch.Policies.Select(p => p is RoutingPolicy.TokenDrop or RoutingPolicy.ExpandedDrop ? RoutingPolicy.Vanilla : p).ToArray()
            : batch.Policies;

    private static long[] Rows(RoutingPolicy[] policies, RoutingPolicy policy) =>
        Enumerable.Range(0, policies.Length).Where(i => policies[i] == policy).Select(i => (long)i).ToArray();

    private static bool TopContains(long[] top, int token, int k, long expert)
    {
        for (int j = 0; j < k; j++) if (top[token * k + j] == expert) return true;
        return false;
    }

    /// <summary>Dropped top-k pairs and kept extras, per token and per expert, read back on the host.</summary>
    private static void Account(RoutingResult result, CapacityRouting.Decision decision, long[] rows, RoutingPolicy[] policies, int k, int slots)
    {
        var kept = decision.Ids.ToHostArray<long>();
        var candidates = decision.Candidates.ToHostArray<long>();
        for (int r = 0; r < rows.Length; r++)
        {
            int token = (int)rows[r];
            for (int j = 0; j < slots; j++)
            {
                long candidate = candidates[r * slots + j], expert = kept[r * slots + j];
                if (j < k && expert < 0) result.CountDropped(policies[token], token, candidate);
                else if (j >= k && expert >= 0) result.CountRerouted(policies[token], token, expert);
            }
        }
    }
}
