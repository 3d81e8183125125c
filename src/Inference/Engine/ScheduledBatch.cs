namespace MoeServe.Inference.Engine;

/// <summary>One sequence's share of a step: run <paramref name="Tokens"/> new tokens of sequence <paramref name="SequenceId"/>.</summary>
public readonly record struct ScheduledSequence(long SequenceId, int Tokens);

/// <summary>What the scheduler decided for one step: sequence ids and token counts, no tensors.</summary>
public sealed record ScheduledBatch(IReadOnlyList<ScheduledSequence> Sequences)
{
    public int TotalTokens => Sequences.Sum(s => s.Tokens);
    public bool IsEmpty => Sequences.Count == 0;
}
