namespace MoeServe.Inference.Engine;

/// <summary>
/// Iteration-level scheduling: every step, running sequences decode one token each, and the remaining
/// token budget goes to prompt chunks (chunked prefill), oldest request first, so a long prompt never
/// stalls the others' decoding. Deals in sequence ids and counts only.
/// </summary>
public sealed class Scheduler(EngineOptions options)
{
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];

    public int Waiting => _waiting.Count;
    public int Running => _running.Count;
    public IReadOnlyList<Sequence> RunningSequences => _running;

    public void Enqueue(Sequence sequence) => _waiting.AddLast(sequence);

    /// <summary>Picks this step's work; admits waiting sequences while slots and token budget last.</summary>
    public ScheduledBatch Schedule()
    {
        var scheduled = new List<ScheduledSequence>();
        int budget = options.MaxBatchedTokens;
        foreach (var s in _running.Where(s => !s.IsPrefilling))
        {
            if (budget == 0) break;
            scheduled.Add(new ScheduledSequence(s.Id, 1));
            budget--;
        }
        foreach (var s in _running.Where(s => s.IsPrefilling))
        {
            if (budget == 0) break;
            int chunk = Math.Min(budget, s.Request.PromptIds.Length - s.PrefilledTokens);
            scheduled.Add(new ScheduledSequence(s.Id, chunk));
            budget -= chunk;
        }
        while (budget > 0 && _waiting.First is { } node && _running.Count < options.MaxRunningSequences)
        {
            var s = node.Value;
            _waiting.RemoveFirst();
            _running.Add(s);
            int chunk = Math.Min(budget, s.Request.PromptIds.Length);
            scheduled.Add(new ScheduledSequence(s.Id, chunk));
            budget -= chunk;
        }
        return new ScheduledBatch(scheduled);
    }

    /// <summary>Removes a finished or cancelled sequence from whichever list holds it.</summary>
    public bool Remove(Sequence sequence) => _running.Remove(sequence) || _waiting.Remove(sequence);

    public IEnumerable<Sequence> All => _running.Concat(_waiting);
}
