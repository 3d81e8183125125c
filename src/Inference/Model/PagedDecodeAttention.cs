using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// Decode attention on the CPU read straight from the paged cache: each decoding sequence's one query against the
/// keys and values at its own slots, float32, one sequence at a time. The libtorch path gathers every sequence's
/// slots into a padded copy and runs fused attention on it, which makes many tiny matrix products: measured on one
/// thread per layer, 16 sequences of 128 positions, 230 us against 84 us for this; 1 sequence, 22 against 5. libtorch has no
/// paged attention for the CPU (vLLM's CPU backend carries a kernel of its own for the same reason).
/// </summary>
/// <remarks>A sequence's result depends on its own slots only, never on the batch or on padding.</remarks>
public static unsafe class PagedDecodeAttention
{
    /// <summary>Whether <see cref="Attend"/> can read this cache: float32 in host memory.</summary>
    public static bool Supports(PagedKvCache cache) => cache.HostFloat32;

    /// <param name="q">[B, heads, d] float32 queries on the CPU, rotary embedding applied; query heads
    /// h * group .. h * group + group - 1 share key/value head h (grouped-query attention).</param>
    /// <param name="cache">The cache, holding each sequence's new key and value already (see <see cref="PagedKvCache.Store"/>).</param>
    /// <param name="layer">Layer whose keys and values are read.</param>
    /// <param name="slots">B slot arrays: sequence b's slot of every position, in order, its new token's last.</param>
    /// <returns>[B, heads * d] float32: softmax(q k^T / sqrt(d)) v per query head.</returns>
    public static Tensor Attend(Tensor q, PagedKvCache cache, int layer, IReadOnlyList<long[]> slots)
    {
        long b = q.size(0), heads = q.size(1), d = q.size(2);
        int kvHeads = cache.KvHeads;
        if (d != cache.HeadDim || heads % kvHeads != 0 || b != slots.Count)
            throw new ArgumentException($"queries [{b}, {heads}, {d}] do not fit the cache ({kvHeads} key/value heads of {cache.HeadDim}) and {slots.Count} sequences");
        if (q.dtype != ScalarType.Float32 || q.device_type != TorchSharp.DeviceType.CPU)
            throw new ArgumentException($"queries must be float32 on the CPU, got {q.dtype} on {q.device}");
        using var queries = q.contiguous();
        var output = torch.empty([b, heads * d], ScalarType.Float32);
        int longest = slots.Count == 0 ? 0 : slots.Max(s => s.Length);
        int group = (int)(heads / kvHeads);
        float[] scores = ArrayPool<float>.Shared.Rent((int)Math.Max(1, heads * longest));
        try
        {
            fixed (byte* qBytes = queries.bytes)
            fixed (byte* outBytes = output.bytes)
            fixed (float* scoreBase = scores)
            {
                var layerHeads = new Heads((float*)cache.KeyPointer(layer), (float*)cache.ValuePointer(layer), kvHeads, (int)d, group, 1f / MathF.Sqrt(d));
                for (int s = 0; s < b; s++)
                {
                    float* sequenceQueries = (float*)qBytes + s * heads * d, sequenceOutput = (float*)outBytes + s * heads * d;
                    if (layerHeads.Vectorised) layerHeads.AttendByBlocks(sequenceQueries, sequenceOutput, slots[s], s + 1 < b ? slots[s + 1] : null, cache.BlockSize, scoreBase);
                    else
                        for (int h = 0; h < kvHeads; h++)
                            layerHeads.Attend(sequenceQueries + h * group * d, sequenceOutput + h * group * d, h, slots[s], scoreBase);
                }
            }
        }
        finally { ArrayPool<float>.Shared.Return(scores); }
        return output;
    }

    /// <summary>
    /// Software prefetch a few cache blocks ahead of the reads, in the order they are read: the sequence's key blocks,
    /// then its value blocks, then the next sequence's key blocks. In a model step the cache is mostly out of the
    /// processor's caches (the weights' traffic evicts it), and its blocks lie scattered, so the hardware's own
    /// prefetcher finds each one missing when the loop reaches it.
    /// </summary>
    private readonly struct BlockFetch(float* keys, float* values, int rowFloats, int blockSize, long[] slots, long[]? nextSlots)
    {
        /// <summary>Blocks requested ahead of the one being read.</summary>
        public const int Ahead = 2;

        private int Blocks(long[] of) => (of.Length + blockSize - 1) / blockSize;

        /// <summary>The sequence's blocks (m): its key blocks are read units 0..m-1, its value blocks m..2m-1.</summary>
        public int KeyBlocks => Blocks(slots);

        /// <summary>Requests read unit <paramref name="unit"/>: key blocks 0..m-1, value blocks m..2m-1, then the
        /// next sequence's key blocks; beyond those, nothing.</summary>
        public void Prefetch(int unit)
        {
            int m = KeyBlocks;
            if (unit < m) Lines(keys, slots, unit);
            else if (unit < 2 * m) Lines(values, slots, unit - m);
            else if (nextSlots is not null && unit - 2 * m < Blocks(nextSlots)) Lines(keys, nextSlots, unit - 2 * m);
        }

        private void Lines(float* cache, long[] of, int block)
        {
            int start = block * blockSize;
            byte* first = (byte*)(cache + of[start] * rowFloats);
            long bytes = (long)Math.Min(blockSize, of.Length - start) * rowFloats * sizeof(float);
            for (long offset = 0; offset < bytes; offset += 64) Sse.Prefetch0(first + offset);
        }
    }

    /// <summary>One layer's cache and the attention's shape.</summary>
    private readonly struct Heads(float* keys, float* values, int kvHeads, int d, int group, float scale)
    {
        /// <summary>Whether the AVX/FMA kernels serve this head size on this machine.</summary>
        public bool Vectorised => Avx.IsSupported && Fma.IsSupported && d % 8 == 0;

        /// <summary>Whether <see cref="WeightedValuesPairs512"/> serves this shape: two query heads a key/value head (the
        /// shipped model's grouping) and heads of whole 32-float pieces, on a CPU with 512-bit vectors.</summary>
        private bool PairsIn512 => group == 2 && d % 32 == 0 && Vector512.IsHardwareAccelerated;

        /// <summary>
        /// Every query head of one sequence (<paramref name="q"/>, [heads, d]) against its cache, cache block by cache
        /// block (each block's keys, then values, of every head read together), requesting the blocks two ahead of the
        /// one being read (<see cref="BlockFetch"/>). In the model's step the cache is mostly out of the processor's
        /// caches (the weights' traffic evicts it), and the reads wait on memory. Measured on one thread, 8 sequences, a
        /// layer's attention after a 32 MB read evicted the caches, median of 280, two alternating runs: 100 positions
        /// 41.2-42.8 µs against 57.0-57.9 when every block was requested at the start, 800 positions 422-488 against
        /// 523-528. Blocks requested 1 / 2 / 4 / 8 ahead (with the 512-bit weighted values): 37.5 / 34.7-37.4 / 37.3 / 39.0 µs at 100 positions.
        /// The same arithmetic in the same order whatever the prefetching (the same bits).
        /// </summary>
        /// <param name="output">[heads, d].</param>
        /// <param name="nextSlots">The next sequence's slots, whose first key blocks are requested while this one ends; null: none.</param>
        /// <param name="blockSize">Positions per cache block: slots of positions in one block are consecutive.</param>
        /// <param name="scores">Scratch of at least heads * slots.Length floats.</param>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        public void AttendByBlocks(float* q, float* output, long[] slots, long[]? nextSlots, int blockSize, float* scores)
        {
            int n = slots.Length, heads = kvHeads * group;
            var fetch = new BlockFetch(keys, values, kvHeads * d, blockSize, slots, nextSlots);
            for (int unit = 0; unit < BlockFetch.Ahead; unit++) fetch.Prefetch(unit);
            // Row h * group + g of the scores holds query head h * group + g; ScoresAvx writes a group's rows with stride n.
            for (int start = 0; start < n; start += blockSize)
            {
                fetch.Prefetch(start / blockSize + BlockFetch.Ahead);
                int count = Math.Min(blockSize, n - start);
                for (int h = 0; h < kvHeads; h++) ScoresAvx(q + h * group * d, h, slots, start, count, n, scores + h * group * n);
            }
            Span<float> sums = stackalloc float[heads];
            ExpRows(scores, n, sums);
            new Span<float>(output, heads * d).Clear();
            for (int start = 0; start < n; start += blockSize)
            {
                fetch.Prefetch(fetch.KeyBlocks + start / blockSize + BlockFetch.Ahead);
                int count = Math.Min(blockSize, n - start);
                for (int h = 0; h < kvHeads; h++)
                    if (PairsIn512) WeightedValuesPairs512(output + h * group * d, h, slots, start, count, n, scores + h * group * n);
                    else WeightedValuesAvx(output + h * group * d, h, slots, start, count, n, scores + h * group * n);
            }
            DivideRows(output, sums);
        }

        /// <summary>Softmax's numerators, in place, for each of <paramref name="sums"/>.Length rows of <paramref name="n"/>
        /// scores: exp(score - the row's maximum), as libtorch subtracts it; each row's sum goes to <paramref name="sums"/>.</summary>
        private static void ExpRows(float* scores, int n, Span<float> sums)
        {
            for (int row = 0; row < sums.Length; row++)
            {
                var scoreRow = new Span<float>(scores + row * n, n);
                TensorPrimitives.Subtract(scoreRow, TensorPrimitives.Max(scoreRow), scoreRow);
                TensorPrimitives.Exp(scoreRow, scoreRow);
                sums[row] = TensorPrimitives.Sum(scoreRow);
            }
        }

        /// <summary>Divides output row i ([d] floats) by <paramref name="sums"/>[i]: the softmax's normalisation, after the weighted sum.</summary>
        private void DivideRows(float* output, ReadOnlySpan<float> sums)
        {
            for (int row = 0; row < sums.Length; row++)
            {
                var outputRow = new Span<float>(output + row * d, d);
                TensorPrimitives.Divide(outputRow, sums[row], outputRow);
            }
        }

        /// <summary>The group's query heads (rows of <paramref name="q"/>, [group, d]) against key/value head
        /// <paramref name="h"/> at <paramref name="slots"/>, written to <paramref name="output"/> ([group, d]).</summary>
        /// <param name="scores">Scratch of at least group * slots.Length floats.</param>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        public void Attend(float* q, float* output, int h, long[] slots, float* scores)
        {
            Scores(q, h, slots, scores);
            Span<float> sums = stackalloc float[group];
            ExpRows(scores, slots.Length, sums);
            WeightedValues(output, h, slots, scores);
            DivideRows(output, sums);
        }

        private float* Key(long slot, int h) => keys + (slot * kvHeads + h) * d;
        private float* Value(long slot, int h) => values + (slot * kvHeads + h) * d;

        /// <summary>scores[g * n + p] = q_g . k_p * scale for positions p in [start, start + count), four at a time: four
        /// independent sums keep the multiply-add units busy, and one horizontal reduction finishes all four.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        private void ScoresAvx(float* q, int h, long[] slots, int start, int count, int n, float* scores)
        {
            int end = start + count, p = start;
            var scale4 = Vector128.Create(scale);
            for (; p + 4 <= end; p += 4)
            {
                float* k0 = Key(slots[p], h), k1 = Key(slots[p + 1], h), k2 = Key(slots[p + 2], h), k3 = Key(slots[p + 3], h);
                for (int g = 0; g < group; g++)
                {
                    float* qg = q + g * d;
                    Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                    for (int i = 0; i < d; i += 8)
                    {
                        var x = Avx.LoadVector256(qg + i);
                        a0 = Fma.MultiplyAdd(x, Avx.LoadVector256(k0 + i), a0);
                        a1 = Fma.MultiplyAdd(x, Avx.LoadVector256(k1 + i), a1);
                        a2 = Fma.MultiplyAdd(x, Avx.LoadVector256(k2 + i), a2);
                        a3 = Fma.MultiplyAdd(x, Avx.LoadVector256(k3 + i), a3);
                    }
                    // hadd(hadd(a0, a1), hadd(a2, a3)) holds each sum's halves in its two 128-bit lanes.
                    var both = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
                    ((both.GetLower() + both.GetUpper()) * scale4).Store(scores + g * n + p);
                }
            }
            for (; p < end; p++)
            {
                float* k = Key(slots[p], h);
                for (int g = 0; g < group; g++)
                {
                    float* qg = q + g * d;
                    var a = Vector256<float>.Zero;
                    for (int i = 0; i < d; i += 8) a = Fma.MultiplyAdd(Avx.LoadVector256(qg + i), Avx.LoadVector256(k + i), a);
                    scores[g * n + p] = Vector256.Sum(a) * scale;
                }
            }
        }

        /// <summary>output[g] += sum over p in [start, start + count) of scores[g * n + p] * v_p, 32 floats of the head
        /// at a time held in registers across the positions (each position added in order, as one pass over all would).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        private void WeightedValuesAvx(float* output, int h, long[] slots, int start, int count, int n, float* scores)
        {
            int end = start + count;
            for (int g = 0; g < group; g++)
            {
                float* weights = scores + g * n, o = output + g * d;
                int c = 0;
                for (; c + 32 <= d; c += 32)
                {
                    Vector256<float> a0 = Avx.LoadVector256(o + c), a1 = Avx.LoadVector256(o + c + 8), a2 = Avx.LoadVector256(o + c + 16), a3 = Avx.LoadVector256(o + c + 24);
                    for (int p = start; p < end; p++)
                    {
                        float* v = Value(slots[p], h) + c;
                        var w = Vector256.Create(weights[p]);
                        a0 = Fma.MultiplyAdd(Avx.LoadVector256(v), w, a0);
                        a1 = Fma.MultiplyAdd(Avx.LoadVector256(v + 8), w, a1);
                        a2 = Fma.MultiplyAdd(Avx.LoadVector256(v + 16), w, a2);
                        a3 = Fma.MultiplyAdd(Avx.LoadVector256(v + 24), w, a3);
                    }
                    a0.Store(o + c); a1.Store(o + c + 8); a2.Store(o + c + 16); a3.Store(o + c + 24);
                }
                for (; c < d; c += 8)
                {
                    var a = Avx.LoadVector256(o + c);
                    for (int p = start; p < end; p++) a = Fma.MultiplyAdd(Avx.LoadVector256(Value(slots[p], h) + c), Vector256.Create(weights[p]), a);
                    a.Store(o + c);
                }
            }
        }

        /// <summary>As <see cref="WeightedValuesAvx"/> for a pair of query heads: each 32 floats of the value row are read
        /// once for both heads and multiplied in 512-bit halves. Every output float takes the same multiply-adds in the
        /// same order as in <see cref="WeightedValuesAvx"/>, so the result is the same to the bit (checked on 8 sequences
        /// of 100 and 800 positions, 4 layers). With the block prefetching, a layer's attention for 8 sequences took
        /// 34.7-37.4 µs against 56.5-66.0 before both at 100 positions with cold caches (23.1-24.1 against 26.1-26.4 warm),
        /// and 361-371 against 539-549 at 800 (234-254 against 354-376 warm): one thread, medians, two alternating runs.</summary>
        /// <param name="output">[2, d] float32: the pair's partial sums, added to in place.</param>
        /// <param name="scores">[2, n] float32 softmax numerators of the pair (row stride <paramref name="n"/>).</param>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        private void WeightedValuesPairs512(float* output, int h, long[] slots, int start, int count, int n, float* scores)
        {
            int end = start + count;
            float* first = scores, second = scores + n, o0 = output, o1 = output + d;
            for (int c = 0; c < d; c += 32)
            {
                Vector512<float> a0 = Vector512.Load(o0 + c), a1 = Vector512.Load(o0 + c + 16);
                Vector512<float> b0 = Vector512.Load(o1 + c), b1 = Vector512.Load(o1 + c + 16);
                for (int p = start; p < end; p++)
                {
                    float* v = Value(slots[p], h) + c;
                    Vector512<float> v0 = Vector512.Load(v), v1 = Vector512.Load(v + 16);
                    Vector512<float> w0 = Vector512.Create(first[p]), w1 = Vector512.Create(second[p]);
                    a0 = Vector512.FusedMultiplyAdd(v0, w0, a0);
                    a1 = Vector512.FusedMultiplyAdd(v1, w0, a1);
                    b0 = Vector512.FusedMultiplyAdd(v0, w1, b0);
                    b1 = Vector512.FusedMultiplyAdd(v1, w1, b1);
                }
                a0.Store(o0 + c); a1.Store(o0 + c + 16);
                b0.Store(o1 + c); b1.Store(o1 + c + 16);
            }
        }

        /// <summary>Any head size, any machine: as <see cref="ScoresAvx"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        private void Scores(float* q, int h, long[] slots, float* scores)
        {
            int n = slots.Length;
            for (int p = 0; p < n; p++)
            {
                var key = new ReadOnlySpan<float>(Key(slots[p], h), d);
                for (int g = 0; g < group; g++) scores[g * n + p] = TensorPrimitives.Dot(new ReadOnlySpan<float>(q + g * d, d), key) * scale;
            }
        }

        /// <summary>Any head size, any machine: as <see cref="WeightedValuesAvx"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        private void WeightedValues(float* output, int h, long[] slots, float* scores)
        {
            int n = slots.Length;
            new Span<float>(output, group * d).Clear();
            for (int p = 0; p < n; p++)
            {
                var value = new ReadOnlySpan<float>(Value(slots[p], h), d);
                for (int g = 0; g < group; g++)
                {
                    var o = new Span<float>(output + g * d, d);
                    TensorPrimitives.MultiplyAdd(value, scores[g * n + p], o, o);
                }
            }
        }
    }
}
