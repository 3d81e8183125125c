using MoeServe.Inference.Model;
using MoeServe.Routing;

namespace MoeServe.Inference.Engine;

/// <summary>
/// Cuts one step's flat batch into parts of whole sequences that can run through the model at the same time
/// on different threads (data parallelism inside a step). Only where no token's routing depends on the
/// others in its batch: capacity and LASER's running loads are computed over the whole step, so such steps
/// stay whole.
/// </summary>
public static class BatchSplit
{
    /// <summary>Fewest sequences in a part: below this a thread handoff costs more than it saves.</summary>
    public const int MinSequencesPerPart = 2;

    /// <param name="batch">The step's batch; its routing must be set.</param>
    /// <param name="parts">Threads available.</param>
    /// <returns>Contiguous runs of the batch's sequences, balanced by tokens, in batch order; just
    /// <paramref name="batch"/> when it cannot or need not be split. Each part's rows and logit rows are its own
    /// (starting at 0), and its logit rows, concatenated in order, are the batch's.</returns>
    public static IReadOnlyList<ForwardBatch> Split(ForwardBatch batch, int parts)
    {
        var routing = batch.Routing ?? throw new ArgumentException("the batch has no routing", nameof(batch));
        parts = Math.Min(parts, batch.Sequences.Count / MinSequencesPerPart);
        if (parts < 2 || !LayerRouter.RoutesTokensIndependently(routing)) return [batch];

        // Cut after the sequence where the running token count first reaches each part's share.
        var ends = new List<int>(parts);
        int total = batch.TokenIds.Length, tokens = 0;
        for (int i = 0; i < batch.Sequences.Count && ends.Count < parts - 1; i++)
        {
            tokens += batch.Sequences[i].Length;
            int first = ends.Count == 0 ? 0 : ends[^1];
            int left = batch.Sequences.Count - (i + 1), partsLeft = parts - ends.Count - 1;
            bool share = (long)tokens * parts >= (long)total * (ends.Count + 1);
            if (i + 1 - first >= MinSequencesPerPart && left >= partsLeft * MinSequencesPerPart && (share || left == partsLeft * MinSequencesPerPart))
                ends.Add(i + 1);
        }
        ends.Add(batch.Sequences.Count);

        var result = new List<ForwardBatch>(ends.Count);
        int from = 0;
        foreach (int to in ends)
        {
            result.Add(Part(batch, routing, from, to));
            from = to;
        }
        return result;
    }

    /// <summary>Sequences [from, to) of <paramref name="batch"/> as a batch of their own.</summary>
    private static ForwardBatch Part(ForwardBatch batch, BatchRouting routing, int from, int to)
    {
        int start = batch.Sequences[from].Start, end = batch.Sequences[to - 1].Start + batch.Sequences[to - 1].Length;
        return new ForwardBatch
        {
            TokenIds = batch.TokenIds[start..end],
            Sequences = batch.Sequences.Skip(from).Take(to - from).Select(s => s with { Start = s.Start - start }).ToArray(),
            LogitRows = batch.LogitRows.Where(r => r >= start && r < end).Select(r => r - start).ToArray(),
            Cache = batch.Cache,
            Routing = new BatchRouting(routing.Policies[start..end], routing.CapacityFactors[start..end], routing.Config, routing.DecodeOnly, routing.Placement),
        };
    }
}
