using MoeServe.Routing;

namespace MoeServe.Inference.Model;

/// <summary>
/// One sequence's part of a flat batch: rows [Start, Start + Length) of the batch are its new tokens, at
/// positions Past .. Past + Length - 1. Slots[p] is where position p's keys and values live in the
/// paged cache (Past + Length entries).
/// </summary>
public sealed record SequenceSlice(int Start, int Length, int Past, long[] Slots);

/// <summary>
/// Everything one forward pass needs, passed explicitly (no global context): the flat token batch, which
/// rows belong to which sequence, which rows need logits, and the routing policy.
/// </summary>
public sealed class ForwardBatch
{
    /// <summary>Token ids of every new token in the step, sequences one after another ([T]).</summary>
    public required long[] TokenIds { get; init; }

    /// <summary>Sequences in batch order; their slices tile [0, T).</summary>
    public required IReadOnlyList<SequenceSlice> Sequences { get; init; }

    /// <summary>Rows whose next-token logits are wanted (e.g. each sequence's last row).</summary>
    public required long[] LogitRows { get; init; }

    /// <summary>The key/value memory the slots refer to.</summary>
    public required PagedKvCache Cache { get; init; }

    /// <summary>Each token's routing policy and capacity factor; null routes every token as vanilla.</summary>
    public BatchRouting? Routing { get; init; }

    /// <summary>Filled by the forward pass: loads, drops and reroutes per layer and expert, and per token.</summary>
    public StepRoutingStats? RoutingStats { get; set; }

    /// <summary>Token-expert pairs executed, [layer][expert] (from <see cref="RoutingStats"/>).</summary>
    public long[][]? ExpertLoads => RoutingStats?.ExpertLoads;
}
