namespace MoeServe.Cli.Compare;

/// <summary>
/// Next-token agreement with a reference run: the share of held-out positions whose argmax prediction is
/// the same token. It sees routing changes that perplexity averages away (a policy can keep the loss and
/// still change which token wins). Both runs must have scored the very same documents.
/// </summary>
public static class TopOneAgreement
{
    /// <param name="policy">[domain][document][position] argmax ids of the compared run.</param>
    /// <param name="reference">The same shape, from the reference run.</param>
    /// <returns>Matching positions and all positions.</returns>
    /// <exception cref="InvalidOperationException">The runs did not score the same inputs.</exception>
    public static (long Matches, long Positions) Count(IReadOnlyList<int[][]> policy, IReadOnlyList<int[][]> reference)
    {
        if (policy.Count != reference.Count) throw new InvalidOperationException("the runs scored different domains");
        long matches = 0, positions = 0;
        for (int d = 0; d < policy.Count; d++)
        {
            if (policy[d].Length != reference[d].Length) throw new InvalidOperationException($"domain {d}: the runs scored different documents");
            for (int doc = 0; doc < policy[d].Length; doc++)
            {
                int[] a = policy[d][doc], b = reference[d][doc];
                if (a.Length != b.Length) throw new InvalidOperationException($"domain {d}, document {doc}: different lengths");
                for (int i = 0; i < a.Length; i++) if (a[i] == b[i]) matches++;
                positions += a.Length;
            }
        }
        return (matches, positions);
    }
}
