using MoeServe.Inference.Model;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>
/// Decode attention read in place from the paged cache against an independent float64 computation on the gathered
/// keys and values (plain matmul, softmax, matmul), and against libtorch's fused attention on the same gathered copy.
/// </summary>
public class PagedDecodeAttentionTests(ITestOutputHelper output)
{
    private const int BlockSize = 16;

    /// <param name="headDim">32: the vectorised path; 12: not a multiple of 8, the portable path.</param>
    [Theory]
    [InlineData(8, 4, 32)]  // grouped-query attention, two query heads per key/value head (the shipped model)
    [InlineData(4, 4, 64)]  // one query head per key/value head
    [InlineData(6, 2, 12)]  // groups of three, portable path
    public void Matches_a_float64_reference_on_the_gathered_cache(int heads, int kvHeads, int headDim)
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var generator = new Generator(5);
        using var cache = new PagedKvCache(2, 64, BlockSize, kvHeads, headDim, ScalarType.Float32, CPU);
        // Lengths: one position, a partial block, exactly a block, several scattered blocks; the longest pads none.
        int[] lengths = [1, 5, 16, 37, 100];
        var random = new Random(3);
        var free = Enumerable.Range(1, 63).OrderBy(_ => random.Next()).ToList(); // block 0 is the cache's padding block
        var slots = lengths.Select(n =>
        {
            var blocks = free.Take((n + BlockSize - 1) / BlockSize).ToList();
            free.RemoveRange(0, blocks.Count);
            return cache.Slots(blocks, n);
        }).ToList();
        const int layer = 1;
        var all = torch.tensor(slots.SelectMany(s => s).ToArray());
        cache.Store(layer, all, torch.randn([all.size(0), kvHeads, headDim], generator: generator), torch.randn([all.size(0), kvHeads, headDim], generator: generator));
        var q = torch.randn([lengths.Length, heads, headDim], generator: generator).mul(2); // sharper softmax than unit scores

        var actual = PagedDecodeAttention.Attend(q, cache, layer, slots); // [B, heads * d]
        Assert.Equal([lengths.Length, heads * headDim], actual.shape);

        double worstReference = 0, worstFused = 0;
        for (int b = 0; b < lengths.Length; b++)
        {
            var (keys, values) = cache.Append(layer, torch.empty(0, ScalarType.Int64), torch.tensor(slots[b]),
                torch.empty([0, kvHeads, headDim]), torch.empty([0, kvHeads, headDim]));                // [S, kvHeads, d] each
            var k = keys.repeat_interleave(heads / kvHeads, 1).permute(1, 0, 2).to(ScalarType.Float64);    // [heads, S, d]
            var v = values.repeat_interleave(heads / kvHeads, 1).permute(1, 0, 2).to(ScalarType.Float64);  // [heads, S, d]
            var qb = q[b].unsqueeze(1).to(ScalarType.Float64);                                             // [heads, 1, d]
            var weights = qb.matmul(k.transpose(1, 2)).div(Math.Sqrt(headDim)).softmax(-1);             // [heads, 1, S]
            var expected = weights.matmul(v).reshape(heads * headDim);                                     // [heads * d]
            var fused = nn.functional.scaled_dot_product_attention(q[b].unsqueeze(1).to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32))
                .reshape(heads * headDim).to(ScalarType.Float64);
            var got = actual[b].to(ScalarType.Float64);
            worstReference = Math.Max(worstReference, (got - expected).abs().max().item<double>());
            worstFused = Math.Max(worstFused, (got - fused).abs().max().item<double>());
        }
        output.WriteLine($"heads {heads}/{kvHeads}, d {headDim}: largest difference from float64 {worstReference:E2}, from libtorch's fused attention {worstFused:E2}");
        // Outputs are averages of unit-scale values: float32 rounding is about 1e-7; a wrong slot, head or scale would be order 1.
        Assert.True(worstReference < 1e-5, $"difference from float64 {worstReference:E2}");
        Assert.True(worstFused < 1e-5, $"difference from fused attention {worstFused:E2}");
    }

    [Fact]
    public void A_sequence_gets_the_same_bits_alone_and_in_a_batch()
    {
        using var inference = torch.inference_mode();
        using var scope = NewDisposeScope();
        var generator = new Generator(9);
        using var cache = new PagedKvCache(1, 32, BlockSize, 4, 32, ScalarType.Float32, CPU);
        var slots = new List<long[]> { cache.Slots([3, 7], 20), cache.Slots([1, 2, 4, 5, 6], 70), cache.Slots([9], 3) };
        var all = torch.tensor(slots.SelectMany(s => s).ToArray());
        cache.Store(0, all, torch.randn([all.size(0), 4, 32], generator: generator), torch.randn([all.size(0), 4, 32], generator: generator));
        var q = torch.randn([3, 8, 32], generator: generator);

        var batched = PagedDecodeAttention.Attend(q, cache, 0, slots);
        for (int b = 0; b < 3; b++)
        {
            var alone = PagedDecodeAttention.Attend(q.narrow(0, b, 1), cache, 0, [slots[b]]);
            Assert.True(alone[0].eq(batched[b]).all().item<bool>(), $"sequence {b} differs alone and batched");
        }
    }

    [Fact]
    public void Reads_only_host_float32_caches()
    {
        using var f32 = new PagedKvCache(1, 4, BlockSize, 2, 8, ScalarType.Float32, CPU);
        using var bf16 = new PagedKvCache(1, 4, BlockSize, 2, 8, ScalarType.BFloat16, CPU);
        Assert.True(PagedDecodeAttention.Supports(f32));
        Assert.False(PagedDecodeAttention.Supports(bf16));
    }
}
