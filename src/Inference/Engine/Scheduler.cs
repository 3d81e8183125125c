namespace MoeServe.Inference.Engine;

/// <summary>
/// Iteration-level scheduling over a paged key/value cache. Every step: running sequences that decode
/// get one token each (oldest first), sequences still prefilling get prompt chunks from the remaining
/// token budget, and waiting sequences are admitted, first come first served, while a running slot, token
/// budget and cache blocks for their whole prompt remain. While sequences decode, a step's prompt tokens
/// are capped (<see cref="PrefillBudgetWhileDecoding"/>), which bounds their inter-token latency. When a
/// decoding sequence needs a block and none is free, the most recently admitted sequence is preempted: its
/// blocks are freed and it waits at the front of the queue to be recomputed. Deals in counts and block
/// numbers only.
/// </summary>
/// <param name="maxRunning">Sequences admitted at once; null: Engine:MaxRunningSequences (an engine loop passes its share).</param>
public sealed class Scheduler(EngineOptions options, BlockAllocator blocks, int? maxRunning = null)
{
    private readonly int _maxRunning = maxRunning ?? options.MaxRunningSequences;
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];

    public int Waiting => _waiting.Count;
    public int Running => _running.Count;
    public long Preemptions { get; private set; }
    public BlockAllocator Blocks => blocks;

    public void Enqueue(Sequence sequence) => _waiting.AddLast(sequence);

    public ScheduledBatch Schedule()
    {
        var scheduled = new List<ScheduledSequence>();
        int budget = options.MaxBatchedTokens;
        for (int i = 0; i < _running.Count && budget > 0; i++)
        {
            var s = _running[i];
            if (s.Uncomputed != 1) continue;
            while (!blocks.TryCover(s.Blocks, s.ComputedTokens + 1))
            {
                // Preempt the newest sequence; if that is this one, it waits for memory itself.
                var victim = _running[^1];
                Preempt(victim);
                if (victim == s) break;
            }
            if (!_running.Contains(s)) continue; // it was the victim itself
            scheduled.Add(new ScheduledSequence(s.Id, 1));
            budget--;
        }
        int decoding = scheduled.Count;
        if (decoding > 0) budget = Math.Min(budget, PrefillBudgetWhileDecoding(decoding));
        foreach (var s in _running)
        {
            if (budget == 0) break;
            if (s.Uncomputed <= 1) continue;
            int chunk = Math.Min(budget, s.Uncomputed);
            scheduled.Add(new ScheduledSequence(s.Id, chunk));
            budget -= chunk;
        }
        while (budget > 0 && _running.Count < _maxRunning && _waiting.First is { } node)
        {
            var s = node.Value;
            // Blocks for every token it has plus the one it will generate next: its chunks never wait for memory.
            if (!blocks.TryCover(s.Blocks, s.Tokens.Count + 1)) break;
            _waiting.RemoveFirst();
            _running.Add(s);
            int chunk = Math.Min(budget, s.Uncomputed);
            scheduled.Add(new ScheduledSequence(s.Id, chunk));
            budget -= chunk;
        }
        return new ScheduledBatch(scheduled);
    }

    /// <summary>Prompt tokens one step may add to <paramref name="decoding"/> decoding sequences.</summary>
    public int PrefillBudgetWhileDecoding(int decoding) =>
        (int)Math.Min(int.MaxValue, Math.Max(options.PrefillChunkTokens, (long)options.PrefillTokensPerDecode * decoding));

    private void Preempt(Sequence s)
    {
        _running.Remove(s);
        blocks.Free(s.Blocks);
        s.ComputedTokens = 0;
        s.Preemptions++;
        Preemptions++;
        _waiting.AddFirst(s);
    }

    /// <summary>Removes a finished or cancelled sequence and frees its blocks.</summary>
    public void Remove(Sequence sequence)
    {
        if (!_running.Remove(sequence)) _waiting.Remove(sequence);
        blocks.Free(sequence.Blocks);
    }

    public IEnumerable<Sequence> All => _running.Concat(_waiting);
}
