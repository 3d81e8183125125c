namespace MoeServe.Routing;

/// <summary>
/// LASER (score-distribution-aware, load-aware routing), as routing-policies.md reads it: a token whose
/// top-k probability mass is at least eps_high routes as vanilla; otherwise it picks the k least-loaded
/// members of its pool (its top-c experts, or all experts when the mass is below eps_low), ties to the
/// higher probability, then the lower id. Tokens are assigned in batch order and loads are running
/// counts within the layer and step. The greedy pass is inherently sequential, so it runs on the host
/// over a [T, E] copy: O(T * E log E), about a microsecond per token for E = 8 (see the routing benchmark).
/// </summary>
public static class LaserRouting
{
    /// <summary>The experts and weights of one token.</summary>
    /// <param name="probs">The token's [E] probabilities.</param>
    /// <param name="loads">[E] running loads; the chosen experts' loads are incremented.</param>
    /// <param name="chosen">[k] output expert ids.</param>
    /// <param name="weights">[k] output native weights.</param>
    public static void RouteToken(float[] probs, GateSemantics gate, LaserParameters parameters, long[] loads,
        Span<long> chosen, Span<float> weights)
    {
        int k = gate.TopK, e = gate.NumExperts;
        var byProbability = Enumerable.Range(0, e).ToList();
        byProbability.Sort((a, b) => probs[a] != probs[b] ? probs[b].CompareTo(probs[a]) : a.CompareTo(b));
        float mass = 0;
        for (int i = 0; i < k; i++) mass += probs[byProbability[i]];

        int pool = parameters.EpsLow is double low && mass < low ? e
            : mass >= parameters.EpsHigh ? k
            : Math.Clamp(parameters.PoolSize ?? k + 1, k, e);
        if (pool == k)
        {
            // A clear preference routes exactly as vanilla (same experts, same slot order).
            float total = 0;
            for (int slot = 0; slot < k; slot++) total += probs[byProbability[slot]];
            for (int slot = 0; slot < k; slot++)
            {
                int expert = byProbability[slot];
                chosen[slot] = expert;
                weights[slot] = gate.RenormalizeTopK ? probs[expert] / total : probs[expert];
                loads[expert]++;
            }
            return;
        }
        // The pool stays in probability order, so on equal loads the first found is the more probable.
        var candidates = byProbability.GetRange(0, pool);
        float sum = 0;
        for (int slot = 0; slot < k; slot++)
        {
            int best = 0;
            for (int i = 1; i < candidates.Count; i++)
                if (loads[candidates[i]] < loads[candidates[best]]) best = i;
            int expert = candidates[best];
            candidates.RemoveAt(best);
            chosen[slot] = expert;
            weights[slot] = probs[expert];
            sum += probs[expert];
            loads[expert]++;
        }
        if (gate.RenormalizeTopK)
            for (int slot = 0; slot < k; slot++) weights[slot] /= sum;
    }
}
