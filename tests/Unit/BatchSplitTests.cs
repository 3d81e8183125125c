using MoeServe.Inference.Engine;
using MoeServe.Inference.Model;
using MoeServe.Routing;

namespace MoeServe.Unit.Tests;

/// <summary>Cutting a step into parts that run on different threads: whole sequences, balanced, order kept.</summary>
public class BatchSplitTests
{
    /// <summary>A batch of sequences with these new-token counts (past 10 each); every sequence's last row wants logits.</summary>
    private static ForwardBatch Batch(int[] lengths, RoutingPolicy policy = RoutingPolicy.Vanilla, bool applyToDecode = false)
    {
        var slices = new List<SequenceSlice>();
        int start = 0;
        foreach (int length in lengths)
        {
            slices.Add(new SequenceSlice(start, length, 10, Enumerable.Range(0, 10 + length).Select(p => (long)(1000 * slices.Count + p)).ToArray()));
            start += length;
        }
        bool decodeOnly = lengths.All(l => l == 1);
        return new ForwardBatch
        {
            TokenIds = Enumerable.Range(0, start).Select(t => (long)(t * 7)).ToArray(),
            Sequences = slices,
            LogitRows = slices.Select(s => (long)(s.Start + s.Length - 1)).ToArray(),
            Cache = null!, // never read by the split
            Routing = BatchRouting.All(start, policy, 1.0, RoutingConfig.Default with { ApplyToDecode = applyToDecode }, decodeOnly),
        };
    }

    [Fact]
    public void Sixteen_decoding_sequences_split_into_two_halves_that_rebuild_the_batch()
    {
        var batch = Batch(Enumerable.Repeat(1, 16).ToArray());
        var parts = BatchSplit.Split(batch, 2);
        Assert.Equal(2, parts.Count);
        Assert.Equal([8, 8], parts.Select(p => p.Sequences.Count));
        // Concatenated in order, the parts give back the batch's tokens, slots, logit rows and policies.
        Assert.Equal(batch.TokenIds, parts.SelectMany(p => p.TokenIds));
        Assert.Equal(batch.Sequences.Select(s => s.Slots), parts.SelectMany(p => p.Sequences.Select(s => s.Slots)));
        int offset = 0;
        var rows = new List<long>();
        foreach (var part in parts)
        {
            Assert.Equal(0, part.Sequences[0].Start);
            Assert.Equal(part.TokenIds.Length, part.Routing!.Tokens);
            Assert.True(part.Routing.DecodeOnly);
            rows.AddRange(part.LogitRows.Select(r => r + offset));
            offset += part.TokenIds.Length;
        }
        Assert.Equal(batch.LogitRows, rows);
    }

    [Fact]
    public void Parts_are_balanced_by_tokens_not_by_sequences()
    {
        // One 40-token prefill chunk and twelve decodes (52 tokens): the chunk alone is past half the tokens, so the
        // first part is the chunk plus the one decode a part needs at least, not half of the thirteen sequences.
        var parts = BatchSplit.Split(Batch([40, .. Enumerable.Repeat(1, 12)]), 2);
        Assert.Equal(2, parts.Count);
        Assert.Equal(2, parts[0].Sequences.Count);
        Assert.Equal(41, parts[0].TokenIds.Length);
        Assert.Equal(11, parts[1].TokenIds.Length);
    }

    [Theory]
    [InlineData(3)] // below two sequences per part
    [InlineData(1)]
    public void Small_batches_stay_whole(int sequences)
    {
        var batch = Batch(Enumerable.Repeat(1, sequences).ToArray());
        Assert.Same(batch, Assert.Single(BatchSplit.Split(batch, 2)));
    }

    [Theory]
    [InlineData(RoutingPolicy.TokenDrop, false, false)] // a prefill step: capacity over the whole step
    [InlineData(RoutingPolicy.ExpandedDrop, false, false)]
    [InlineData(RoutingPolicy.Laser, true, false)] // LASER's running loads span the step, decode or not
    [InlineData(RoutingPolicy.TokenDrop, true, true)] // capacity enforced on decode steps too
    public void Steps_whose_routing_spans_the_batch_stay_whole(RoutingPolicy policy, bool decode, bool applyToDecode)
    {
        var batch = Batch(Enumerable.Repeat(decode ? 1 : 5, 16).ToArray(), policy, applyToDecode);
        Assert.Same(batch, Assert.Single(BatchSplit.Split(batch, 2)));
    }

    [Fact]
    public void Capacity_policies_on_plain_decode_steps_route_as_top_k_and_split()
    {
        var parts = BatchSplit.Split(Batch(Enumerable.Repeat(1, 8).ToArray(), RoutingPolicy.TokenDrop), 2);
        Assert.Equal(2, parts.Count);
    }
}
