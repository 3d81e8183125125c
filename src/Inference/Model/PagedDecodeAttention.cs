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
        float[] scores = ArrayPool<float>.Shared.Rent(Math.Max(1, group * longest));
        try
        {
            fixed (byte* qBytes = queries.bytes)
            fixed (byte* outBytes = output.bytes)
            fixed (float* scoreBase = scores)
            {
                var heads_ = new Heads((float*)cache.KeyPointer(layer), (float*)cache.ValuePointer(layer), kvHeads, (int)d, group, 1f / MathF.Sqrt(d));
                for (int s = 0; s < b; s++)
                    for (int h = 0; h < kvHeads; h++)
                    {
                        long firstQueryHead = s * heads + (long)h * group;
                        heads_.Attend((float*)qBytes + firstQueryHead * d, (float*)outBytes + firstQueryHead * d, h, slots[s], scoreBase);
                    }
            }
        }
        finally { ArrayPool<float>.Shared.Return(scores); }
        return output;
    }

    /// <summary>One layer's cache and the attention's shape.</summary>
    private readonly struct Heads(float* keys, float* values, int kvHeads, int d, int group, float scale)
    {
        /// <summary>The group's query heads (rows of <paramref name="q"/>, [group, d]) against key/value head
        /// <paramref name="h"/> at <paramref name="slots"/>, written to <paramref name="output"/> ([group, d]).</summary>
        /// <param name="scores">Scratch of at least group * slots.Length floats.</param>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        public void Attend(float* q, float* output, int h, long[] slots, float* scores)
        {
            int n = slots.Length;
            bool vectorised = Avx.IsSupported && Fma.IsSupported && d % 8 == 0;
            if (vectorised) ScoresAvx(q, h, slots, scores);
            else Scores(q, h, slots, scores);
            // Softmax per query head, subtracting the maximum as libtorch does; normalised after the sum below.
            var sums = stackalloc float[group];
            for (int g = 0; g < group; g++)
            {
                var row = new Span<float>(scores + g * n, n);
                TensorPrimitives.Subtract(row, TensorPrimitives.Max(row), row);
                TensorPrimitives.Exp(row, row);
                sums[g] = TensorPrimitives.Sum(row);
            }
            if (vectorised) WeightedValuesAvx(output, h, slots, scores);
            else WeightedValues(output, h, slots, scores);
            for (int g = 0; g < group; g++)
            {
                var row = new Span<float>(output + g * d, d);
                TensorPrimitives.Divide(row, sums[g], row);
            }
        }

        private float* Key(long slot, int h) => keys + (slot * kvHeads + h) * d;
        private float* Value(long slot, int h) => values + (slot * kvHeads + h) * d;

        /// <summary>scores[g * n + p] = q_g . k_p * scale, four positions at a time: four independent sums
        /// keep the multiply-add units busy, and one horizontal reduction finishes all four.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        private void ScoresAvx(float* q, int h, long[] slots, float* scores)
        {
            int n = slots.Length, p = 0;
            var scale4 = Vector128.Create(scale);
            for (; p + 4 <= n; p += 4)
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
            for (; p < n; p++)
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

        /// <summary>output[g] = sum over p of scores[g * n + p] * v_p, 32 floats of the head at a time held in
        /// registers across the positions.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering
        private void WeightedValuesAvx(float* output, int h, long[] slots, float* scores)
        {
            int n = slots.Length;
            for (int g = 0; g < group; g++)
            {
                float* weights = scores + g * n, o = output + g * d;
                int c = 0;
                for (; c + 32 <= d; c += 32)
                {
                    Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                    for (int p = 0; p < n; p++)
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
                    var a = Vector256<float>.Zero;
                    for (int p = 0; p < n; p++) a = Fma.MultiplyAdd(Avx.LoadVector256(Value(slots[p], h) + c), Vector256.Create(weights[p]), a);
                    a.Store(o + c);
                }
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
