using MoeServe.Inference.Model;
using MoeServe.Inference.Parallel;
using MoeServe.Routing;
using static TorchSharp.torch;

namespace MoeServe.Inference.Engine;

/// <summary>Rows of the step's logits that belong to one sequence, in token order.</summary>
/// <param name="FirstRow">Index of the sequence's first row in the logits matrix.</param>
/// <param name="Rows">How many rows: every new token's when prompt logprobs are wanted, else the last one.</param>
public readonly record struct SequenceLogits(int FirstRow, int Rows);

/// <summary>
/// Owns the tensors of a step: the paged cache, the flat batch built from the scheduler's decision, the
/// model call, and the logits rows each sequence needs. Holds no queues.
/// </summary>
/// <param name="stepThreads">Threads that run parts of one step at once (see <see cref="BatchSplit"/>); null: the caller alone.</param>
public sealed class ModelRunner(MoeForCausalLM model, PagedKvCache cache, RoutingConfig routing, WorkerThreads? stepThreads = null)
{
    public MoeForCausalLM Model => model;
    public PagedKvCache Cache => cache;

    /// <returns>Logits [R, V] float32 (row-major) on the CPU, where each sequence's rows are, and the expert loads.</returns>
    public (StepLogits Logits, Dictionary<long, SequenceLogits> Rows, StepRoutingStats Routing) Execute(
        ScheduledBatch scheduled, IReadOnlyDictionary<long, Sequence> sequences)
    {
        var tokenIds = new long[scheduled.TotalTokens];
        var policies = new RoutingPolicy[scheduled.TotalTokens];
        var capacityFactors = new double[scheduled.TotalTokens];
        bool decodeOnly = true;
        var slices = new List<SequenceSlice>(scheduled.Sequences.Count);
        var logitRows = new List<long>();
        var rows = new Dictionary<long, SequenceLogits>();
        int start = 0;
        foreach (var (id, count) in scheduled.Sequences)
        {
            var s = sequences[id];
            int past = s.ComputedTokens;
            for (int i = 0; i < count; i++) tokenIds[start + i] = s.Tokens[past + i];
            // Every token carries its request's routing policy: requests in one step may differ.
            Array.Fill(policies, s.Request.Policy, start, count);
            Array.Fill(capacityFactors, s.Request.CapacityFactor, start, count);
            decodeOnly &= count == 1 && past >= s.PromptLength;
            slices.Add(new SequenceSlice(start, count, past, cache.Slots(s.Blocks, past + count)));

            bool samples = past + count == s.Tokens.Count;
            bool allRows = s.WantsPromptLogprobs && past < s.PromptLength;
            if (allRows || samples)
            {
                int first = allRows ? start : start + count - 1;
                rows[id] = new SequenceLogits(logitRows.Count, start + count - first);
                for (int r = first; r < start + count; r++) logitRows.Add(r);
            }
            start += count;
        }
        var batch = new ForwardBatch
        {
            TokenIds = tokenIds, Sequences = slices, LogitRows = logitRows.ToArray(), Cache = cache,
            Routing = new BatchRouting(policies, capacityFactors, routing, decodeOnly, model.ExpertParallel.Placement),
        };
        // Every part writes its logit rows, in part order, into the runner's one buffer.
        var parts = BatchSplit.Split(batch, stepThreads?.Count ?? 1);
        int vocab = model.Config.VocabSize;
        float[] data = LogitsBuffer(logitRows.Count * vocab);
        StepRoutingStats stats;
        if (parts.Count == 1)
        {
            ForwardToHost(batch, data.AsSpan(0, logitRows.Count * vocab));
            stats = batch.RoutingStats!;
        }
        else
        {
            var jobs = new Action?[stepThreads!.Count];
            int firstRow = 0;
            for (int i = 0; i < parts.Count; i++)
            {
                var part = parts[i];
                int offset = firstRow * vocab, length = part.LogitRows.Length * vocab;
                jobs[i] = () => ForwardToHost(part, data.AsSpan(offset, length));
                firstRow += part.LogitRows.Length;
            }
            stepThreads.RunAll(jobs);
            stats = StepRoutingStats.Concat(parts.Select(p => p.RoutingStats!).ToList());
        }
        start = 0;
        foreach (var (id, count) in scheduled.Sequences)
        {
            var s = sequences[id];
            for (int i = start; i < start + count; i++)
            {
                s.DroppedPairs += stats.DroppedPerToken[i];
                s.ReroutedPairs += stats.ReroutedPerToken[i];
            }
            start += count;
        }
        return (new StepLogits(data, vocab), rows, stats);
    }

    /// <summary>
    /// The logits of every step land in one array that grows and is then reused: a step's logits are read
    /// before the next step starts. A fresh array per step (16 KiB a row) put batches of 6 rows or more on
    /// the large object heap, and a 30 s load run showed 88 gen-2 collections out of 145, each pausing the engine.
    /// </summary>
    private float[] LogitsBuffer(int length)
    {
        if (_logits.Length < length) _logits = new float[Math.Max(length, _logits.Length * 2)];
        return _logits;
    }

    private float[] _logits = [];

    /// <summary>One forward pass; its logits ([R, V] float32, row-major) copied into <paramref name="destination"/> and freed.</summary>
    private void ForwardToHost(ForwardBatch batch, Span<float> destination)
    {
        using var scope = NewDisposeScope();
        using var logits = model.Forward(batch); // [R, V]
        // One block copy of the contiguous host tensor: TensorAccessor.ToArray copies element by element
        // (measured 565-690 us for 16 x 4096 logits, against 6 us through the bytes view).
        if (destination.Length != logits.NumberOfElements)
            throw new InvalidOperationException($"the forward pass returned {logits.NumberOfElements} logits, {destination.Length} expected");
        if (destination.Length > 0) System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(logits.contiguous().bytes).CopyTo(destination);
    }
}

/// <summary>A step's logits copied to managed memory: [R, V] float32, row-major (the array may be longer; valid until the next step).</summary>
public sealed record StepLogits(float[] Data, int Vocab)
{
    public ReadOnlySpan<float> Row(int row) => Data.AsSpan(row * Vocab, Vocab);
}
