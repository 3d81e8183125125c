using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MoeServe.Inference.Model;

/// <summary>
/// The SwiGLU experts of one layer on the CPU, float32 arithmetic on weights held as bfloat16, in one managed call per
/// expert: gate and up products, SiLU(gate) x up, and the down product, reading each weight once per four rows.
/// </summary>
/// <remarks>
/// <para>Why not FBGEMM's float16 products (<see cref="HalfPackedGemm"/>): with the few rows per expert of batched
/// decoding, a small model's expert costs mostly its calls (two products, SiLU, multiply and the narrows through
/// TorchScript, a few microseconds each) and reading its weights, which this kernel streams from tiles laid out in
/// the order it reads them. .NET has no float16 conversion instruction (F16C), while bfloat16 widens to float32 with
/// a shift or a mask, so the weights are held as bfloat16: exact for a bfloat16 checkpoint's weights, so the products
/// are the float32 model's on its stored weights, as FBGEMM's are.</para>
/// <para>Each output is a float32 fused multiply-add chain over the inputs in order, whatever the number of rows,
/// so a row's result never depends on the rows beside it (batch invariant).</para>
/// <para>Layout: the gate and up weights of 16 consecutive FFN units share a 64-byte chunk per hidden input, the
/// gate's bfloat16 in the low half of each 32-bit lane and the up's in the high half, so one load gives both; the
/// down weights of 32 hidden units share a chunk per FFN input, units 0-15 low and 16-31 high.</para>
/// <para>Legend: H hidden size, F expert FFN size, M rows.</para>
/// </remarks>
public sealed unsafe class Bf16SwiGluKernel : IDisposable
{
    private const int Lanes = 16;           // float32 lanes of a 512-bit vector
    private const int ChunkShorts = 2 * Lanes;
    private readonly int _hidden, _ffn;
    private readonly int _upOffset;         // 8F: where the up products lie in the scratch, after eight rows' gate products
    private ushort* _gateUp;                // [F/16][H][32]
    private ushort* _down;                  // [H/32][F][32]

    /// <summary>Whether this CPU runs the kernel (512-bit vectors in hardware).</summary>
    public static bool Supported => Vector512.IsHardwareAccelerated;

    /// <summary>Whether these sizes fit the kernel's tiles, taken two at a time (H a multiple of 64, F of 32).</summary>
    public static bool Fits(long hidden, long ffn) => hidden % 64 == 0 && ffn % 32 == 0 && hidden > 0 && ffn > 0;

    /// <param name="gate">[F, H] bfloat16 bits of the gate weight (w1), row-major.</param>
    /// <param name="up">[F, H] bfloat16 bits of the up weight (w3).</param>
    /// <param name="down">[H, F] bfloat16 bits of the down weight (w2).</param>
    public Bf16SwiGluKernel(ReadOnlySpan<ushort> gate, ReadOnlySpan<ushort> up, ReadOnlySpan<ushort> down, int hidden, int ffn)
    {
        if (!Fits(hidden, ffn)) throw new ArgumentException($"hidden {hidden} must be a multiple of 64 and FFN {ffn} of 32");
        if (gate.Length != ffn * hidden || up.Length != ffn * hidden || down.Length != hidden * ffn)
            throw new ArgumentException("weight sizes do not match hidden and FFN sizes");
        _hidden = hidden;
        _ffn = ffn;
        _upOffset = 8 * ffn;
        _gateUp = (ushort*)NativeMemory.AlignedAlloc((nuint)(2L * ffn * hidden * sizeof(ushort)), 64);
        _down = (ushort*)NativeMemory.AlignedAlloc((nuint)((long)hidden * ffn * sizeof(ushort)), 64);
        for (int tile = 0; tile < ffn / Lanes; tile++)
            for (int k = 0; k < hidden; k++)
            {
                ushort* chunk = _gateUp + ((long)tile * hidden + k) * ChunkShorts;
                for (int i = 0; i < Lanes; i++)
                {
                    int unit = tile * Lanes + i;
                    chunk[2 * i] = gate[unit * hidden + k];
                    chunk[2 * i + 1] = up[unit * hidden + k];
                }
            }
        for (int tile = 0; tile < hidden / ChunkShorts; tile++)
            for (int k = 0; k < ffn; k++)
            {
                ushort* chunk = _down + ((long)tile * ffn + k) * ChunkShorts;
                for (int i = 0; i < Lanes; i++)
                {
                    chunk[2 * i] = down[(tile * ChunkShorts + i) * ffn + k];
                    chunk[2 * i + 1] = down[(tile * ChunkShorts + Lanes + i) * ffn + k];
                }
            }
    }

    public int Hidden => _hidden;
    public int Ffn => _ffn;

    // The loops below are compiled optimised at their first call (AggressiveOptimization): unoptimised vector code
    // is many times slower, and a prompt's rare calls would otherwise run it for a long while.

    /// <summary>SwiGLU of <paramref name="rows"/> rows: output = (SiLU(x W1ᵀ) ⊙ x W3ᵀ) W2ᵀ.</summary>
    /// <param name="input">[M, H] float32, row stride H.</param>
    /// <param name="output">[M, H] float32, row stride H; overwritten.</param>
    /// <param name="scratch">At least <see cref="ScratchFloats"/> floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(float* input, float* output, int rows, float* scratch)
    {
        int first = 0;
        for (; rows - first >= 8; first += 8)
        {
            float* x = input + (long)first * _hidden, y = output + (long)first * _hidden;
            GateUp8(x, scratch);
            Activate(scratch, 8);
            Down8(scratch, y);
        }
        for (; first < rows; first += 4)
        {
            int count = Math.Min(4, rows - first);
            float* x = input + (long)first * _hidden, y = output + (long)first * _hidden;
            switch (count)
            {
                case 1:
                    GateUp1(x, scratch);
                    Activate(scratch, 1);
                    Down1(scratch, y);
                    break;
                case 2:
                    GateUp2(x, x + _hidden, scratch, scratch + _ffn);
                    Activate(scratch, 2);
                    Down2(scratch, scratch + _ffn, y, y + _hidden);
                    break;
                default:
                    // Three rows run as four with the last repeated; its results are discarded (written to scratch).
                    float* x3 = count == 4 ? x + 3L * _hidden : x + 2L * _hidden;
                    GateUp4(x, x + _hidden, x + 2L * _hidden, x3, scratch);
                    Activate(scratch, count);
                    float* discard = scratch + 2L * _upOffset;
                    Down4(scratch, y, y + _hidden, y + 2L * _hidden, count == 4 ? y + 3L * _hidden : discard);
                    break;
            }
        }
    }

    /// <summary><see cref="Run(float*, float*, int, float*)"/> on managed memory, with scratch of its own.</summary>
    /// <param name="input">[M, H] float32, row-major.</param>
    /// <param name="output">[M, H] float32, row-major; overwritten.</param>
    public void Run(ReadOnlySpan<float> input, Span<float> output, int rows)
    {
        if (rows < 0 || input.Length < (long)rows * _hidden || output.Length < (long)rows * _hidden)
            throw new ArgumentException($"{rows} rows of {_hidden} need {(long)rows * _hidden} floats in and out, got {input.Length} and {output.Length}");
        var scratch = new float[ScratchFloats];
        fixed (float* x = input)
        fixed (float* y = output)
        fixed (float* s = scratch)
            Run(x, y, rows, s);
    }

    /// <summary>Floats of scratch <see cref="Run"/> needs: gate and up products of eight rows, and one discarded output row.</summary>
    public int ScratchFloats => 2 * _upOffset + _hidden;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Low(Vector512<uint> chunk) => Vector512.ShiftLeft(chunk, 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> High(Vector512<uint> chunk) => (chunk & Vector512.Create(0xFFFF0000u)).AsSingle();

    /// <summary>Turns the gate and up products of <paramref name="rows"/> rows into SiLU(gate) x up, in the gate's place.</summary>
    /// <param name="scratch">Row r's gate at r x F, its up at <see cref="_upOffset"/> + r x F.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Activate(float* scratch, int rows)
    {
        for (int r = 0; r < rows; r++)
        {
            float* gate = scratch + (long)r * _ffn, up = gate + _upOffset;
            for (int i = 0; i < _ffn; i += Lanes)
            {
                var g = Vector512.Load(gate + i);
                (g / (Vector512<float>.One + Exp(-g)) * Vector512.Load(up + i)).Store(gate + i);
            }
        }
    }

    /// <summary>e^x to about 2 units in the last place (x clamped to [-87.3, 88.7], where float32 neither overflows nor
    /// goes subnormal): 2^n x p(r) with x = n ln 2 + r, |r| ≤ ln 2 / 2, and p Cephes' degree-6 polynomial.</summary>
    /// <remarks>Written here because .NET's Vector512.Exp computes in float64 and is not inlined into a kernel; libtorch's
    /// SiLU (SLEEF's float32 exp, 1 ulp) is not callable per vector. SiLU's result differs from libtorch's by a few ulp.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-87.3f)), Vector512.Create(88.7f));
        var n = Vector512.Round(x * Vector512.Create(1.44269504088896341f));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-0.693359375f), x);      // ln 2 in two parts, for an exact
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(2.12194440e-4f), r);          // first product
        var p = Vector512.Create(1.9875691500E-4f);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.3981999507E-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(8.3334519073E-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(4.1665795894E-2f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.6666665459E-1f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(5.0000001201E-1f));
        p = Vector512.FusedMultiplyAdd(p, r * r, r) + Vector512<float>.One;
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        return p * scale;
    }

    // The one-row kernels keep four independent multiply-add chains (two tiles), which reach the rate the weights
    // stream from the last-level cache (measured: four tiles at once were slower); the two- and four-row kernels
    // keep eight, enough to hide the instruction's latency.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void GateUp1(float* x, float* act)
    {
        int h = _hidden;
        for (int tile = 0; tile < _ffn / Lanes; tile += 2)
        {
            var w0 = (Vector512<uint>*)(_gateUp + (long)tile * h * ChunkShorts);
            var w1 = w0 + h;
            Vector512<float> g0 = default, u0 = default, g1 = default, u1 = default;
            for (int k = 0; k < h; k++)
            {
                var a = Vector512.Create(x[k]);
                var c = Vector512.Load((uint*)(w0 + k));
                g0 = Vector512.FusedMultiplyAdd(a, Low(c), g0);
                u0 = Vector512.FusedMultiplyAdd(a, High(c), u0);
                c = Vector512.Load((uint*)(w1 + k));
                g1 = Vector512.FusedMultiplyAdd(a, Low(c), g1);
                u1 = Vector512.FusedMultiplyAdd(a, High(c), u1);
            }
            float* at = act + tile * Lanes;
            g0.Store(at); u0.Store(at + _upOffset);
            g1.Store(at + Lanes); u1.Store(at + Lanes + _upOffset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void GateUp2(float* x0, float* x1, float* act0, float* act1)
    {
        int h = _hidden;
        for (int tile = 0; tile < _ffn / Lanes; tile += 2)
        {
            var w0 = (Vector512<uint>*)(_gateUp + (long)tile * h * ChunkShorts);
            var w1 = w0 + h;
            Vector512<float> g00 = default, u00 = default, g01 = default, u01 = default, g10 = default, u10 = default, g11 = default, u11 = default;
            for (int k = 0; k < h; k++)
            {
                var a0 = Vector512.Create(x0[k]);
                var a1 = Vector512.Create(x1[k]);
                var c = Vector512.Load((uint*)(w0 + k));
                Vector512<float> lo = Low(c), hi = High(c);
                g00 = Vector512.FusedMultiplyAdd(a0, lo, g00);
                u00 = Vector512.FusedMultiplyAdd(a0, hi, u00);
                g10 = Vector512.FusedMultiplyAdd(a1, lo, g10);
                u10 = Vector512.FusedMultiplyAdd(a1, hi, u10);
                c = Vector512.Load((uint*)(w1 + k));
                lo = Low(c);
                hi = High(c);
                g01 = Vector512.FusedMultiplyAdd(a0, lo, g01);
                u01 = Vector512.FusedMultiplyAdd(a0, hi, u01);
                g11 = Vector512.FusedMultiplyAdd(a1, lo, g11);
                u11 = Vector512.FusedMultiplyAdd(a1, hi, u11);
            }
            int at = tile * Lanes;
            g00.Store(act0 + at); u00.Store(act0 + at + _upOffset);
            g01.Store(act0 + at + Lanes); u01.Store(act0 + at + Lanes + _upOffset);
            g10.Store(act1 + at); u10.Store(act1 + at + _upOffset);
            g11.Store(act1 + at + Lanes); u11.Store(act1 + at + Lanes + _upOffset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void GateUp4(float* x0, float* x1, float* x2, float* x3, float* act)
    {
        int h = _hidden, f = _ffn;
        for (int tile = 0; tile < f / Lanes; tile++)
        {
            var w = (Vector512<uint>*)(_gateUp + (long)tile * h * ChunkShorts);
            Vector512<float> g0 = default, u0 = default, g1 = default, u1 = default, g2 = default, u2 = default, g3 = default, u3 = default;
            for (int k = 0; k < h; k++)
            {
                var c = Vector512.Load((uint*)(w + k));
                Vector512<float> lo = Low(c), hi = High(c);
                var a = Vector512.Create(x0[k]);
                g0 = Vector512.FusedMultiplyAdd(a, lo, g0);
                u0 = Vector512.FusedMultiplyAdd(a, hi, u0);
                a = Vector512.Create(x1[k]);
                g1 = Vector512.FusedMultiplyAdd(a, lo, g1);
                u1 = Vector512.FusedMultiplyAdd(a, hi, u1);
                a = Vector512.Create(x2[k]);
                g2 = Vector512.FusedMultiplyAdd(a, lo, g2);
                u2 = Vector512.FusedMultiplyAdd(a, hi, u2);
                a = Vector512.Create(x3[k]);
                g3 = Vector512.FusedMultiplyAdd(a, lo, g3);
                u3 = Vector512.FusedMultiplyAdd(a, hi, u3);
            }
            int at = tile * Lanes;
            g0.Store(act + at); u0.Store(act + at + _upOffset);
            g1.Store(act + f + at); u1.Store(act + f + at + _upOffset);
            g2.Store(act + 2 * f + at); u2.Store(act + 2 * f + at + _upOffset);
            g3.Store(act + 3 * f + at); u3.Store(act + 3 * f + at + _upOffset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void GateUp8(float* x, float* act)
    {
        int h = _hidden, f = _ffn;
        for (int tile = 0; tile < f / Lanes; tile++)
        {
            var w = (Vector512<uint>*)(_gateUp + (long)tile * h * ChunkShorts);
            Vector512<float> g0 = default, u0 = default, g1 = default, u1 = default, g2 = default, u2 = default, g3 = default, u3 = default;
            Vector512<float> g4 = default, u4 = default, g5 = default, u5 = default, g6 = default, u6 = default, g7 = default, u7 = default;
            for (int k = 0; k < h; k++)
            {
                var c = Vector512.Load((uint*)(w + k));
                Vector512<float> lo = Low(c), hi = High(c);
                var a = Vector512.Create(x[k]);
                g0 = Vector512.FusedMultiplyAdd(a, lo, g0);
                u0 = Vector512.FusedMultiplyAdd(a, hi, u0);
                a = Vector512.Create(x[h + k]);
                g1 = Vector512.FusedMultiplyAdd(a, lo, g1);
                u1 = Vector512.FusedMultiplyAdd(a, hi, u1);
                a = Vector512.Create(x[2 * h + k]);
                g2 = Vector512.FusedMultiplyAdd(a, lo, g2);
                u2 = Vector512.FusedMultiplyAdd(a, hi, u2);
                a = Vector512.Create(x[3 * h + k]);
                g3 = Vector512.FusedMultiplyAdd(a, lo, g3);
                u3 = Vector512.FusedMultiplyAdd(a, hi, u3);
                a = Vector512.Create(x[4 * h + k]);
                g4 = Vector512.FusedMultiplyAdd(a, lo, g4);
                u4 = Vector512.FusedMultiplyAdd(a, hi, u4);
                a = Vector512.Create(x[5 * h + k]);
                g5 = Vector512.FusedMultiplyAdd(a, lo, g5);
                u5 = Vector512.FusedMultiplyAdd(a, hi, u5);
                a = Vector512.Create(x[6 * h + k]);
                g6 = Vector512.FusedMultiplyAdd(a, lo, g6);
                u6 = Vector512.FusedMultiplyAdd(a, hi, u6);
                a = Vector512.Create(x[7 * h + k]);
                g7 = Vector512.FusedMultiplyAdd(a, lo, g7);
                u7 = Vector512.FusedMultiplyAdd(a, hi, u7);
            }
            float* at = act + tile * Lanes;
            g0.Store(at); u0.Store(at + _upOffset);
            g1.Store(at + f); u1.Store(at + f + _upOffset);
            g2.Store(at + 2 * f); u2.Store(at + 2 * f + _upOffset);
            g3.Store(at + 3 * f); u3.Store(at + 3 * f + _upOffset);
            g4.Store(at + 4 * f); u4.Store(at + 4 * f + _upOffset);
            g5.Store(at + 5 * f); u5.Store(at + 5 * f + _upOffset);
            g6.Store(at + 6 * f); u6.Store(at + 6 * f + _upOffset);
            g7.Store(at + 7 * f); u7.Store(at + 7 * f + _upOffset);
        }
    }

    /// <param name="act">[8, F] activations, row stride F.</param>
    /// <param name="y">[8, H] outputs, row stride H.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Down8(float* act, float* y)
    {
        int f = _ffn, h = _hidden;
        for (int tile = 0; tile < h / ChunkShorts; tile++)
        {
            var w = (Vector512<uint>*)(_down + (long)tile * f * ChunkShorts);
            Vector512<float> lo0 = default, hi0 = default, lo1 = default, hi1 = default, lo2 = default, hi2 = default, lo3 = default, hi3 = default;
            Vector512<float> lo4 = default, hi4 = default, lo5 = default, hi5 = default, lo6 = default, hi6 = default, lo7 = default, hi7 = default;
            for (int k = 0; k < f; k++)
            {
                var c = Vector512.Load((uint*)(w + k));
                Vector512<float> l = Low(c), u = High(c);
                var a = Vector512.Create(act[k]);
                lo0 = Vector512.FusedMultiplyAdd(a, l, lo0);
                hi0 = Vector512.FusedMultiplyAdd(a, u, hi0);
                a = Vector512.Create(act[f + k]);
                lo1 = Vector512.FusedMultiplyAdd(a, l, lo1);
                hi1 = Vector512.FusedMultiplyAdd(a, u, hi1);
                a = Vector512.Create(act[2 * f + k]);
                lo2 = Vector512.FusedMultiplyAdd(a, l, lo2);
                hi2 = Vector512.FusedMultiplyAdd(a, u, hi2);
                a = Vector512.Create(act[3 * f + k]);
                lo3 = Vector512.FusedMultiplyAdd(a, l, lo3);
                hi3 = Vector512.FusedMultiplyAdd(a, u, hi3);
                a = Vector512.Create(act[4 * f + k]);
                lo4 = Vector512.FusedMultiplyAdd(a, l, lo4);
                hi4 = Vector512.FusedMultiplyAdd(a, u, hi4);
                a = Vector512.Create(act[5 * f + k]);
                lo5 = Vector512.FusedMultiplyAdd(a, l, lo5);
                hi5 = Vector512.FusedMultiplyAdd(a, u, hi5);
                a = Vector512.Create(act[6 * f + k]);
                lo6 = Vector512.FusedMultiplyAdd(a, l, lo6);
                hi6 = Vector512.FusedMultiplyAdd(a, u, hi6);
                a = Vector512.Create(act[7 * f + k]);
                lo7 = Vector512.FusedMultiplyAdd(a, l, lo7);
                hi7 = Vector512.FusedMultiplyAdd(a, u, hi7);
            }
            float* at = y + tile * ChunkShorts;
            lo0.Store(at); hi0.Store(at + Lanes);
            lo1.Store(at + h); hi1.Store(at + h + Lanes);
            lo2.Store(at + 2 * h); hi2.Store(at + 2 * h + Lanes);
            lo3.Store(at + 3 * h); hi3.Store(at + 3 * h + Lanes);
            lo4.Store(at + 4 * h); hi4.Store(at + 4 * h + Lanes);
            lo5.Store(at + 5 * h); hi5.Store(at + 5 * h + Lanes);
            lo6.Store(at + 6 * h); hi6.Store(at + 6 * h + Lanes);
            lo7.Store(at + 7 * h); hi7.Store(at + 7 * h + Lanes);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Down1(float* act, float* y)
    {
        int f = _ffn;
        for (int tile = 0; tile < _hidden / ChunkShorts; tile += 2)
        {
            var w0 = (Vector512<uint>*)(_down + (long)tile * f * ChunkShorts);
            var w1 = w0 + f;
            Vector512<float> lo0 = default, hi0 = default, lo1 = default, hi1 = default;
            for (int k = 0; k < f; k++)
            {
                var a = Vector512.Create(act[k]);
                var c = Vector512.Load((uint*)(w0 + k));
                lo0 = Vector512.FusedMultiplyAdd(a, Low(c), lo0);
                hi0 = Vector512.FusedMultiplyAdd(a, High(c), hi0);
                c = Vector512.Load((uint*)(w1 + k));
                lo1 = Vector512.FusedMultiplyAdd(a, Low(c), lo1);
                hi1 = Vector512.FusedMultiplyAdd(a, High(c), hi1);
            }
            float* at = y + tile * ChunkShorts;
            lo0.Store(at); hi0.Store(at + Lanes);
            lo1.Store(at + ChunkShorts); hi1.Store(at + ChunkShorts + Lanes);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Down2(float* act0, float* act1, float* y0, float* y1)
    {
        int f = _ffn;
        for (int tile = 0; tile < _hidden / ChunkShorts; tile += 2)
        {
            var w0 = (Vector512<uint>*)(_down + (long)tile * f * ChunkShorts);
            var w1 = w0 + f;
            Vector512<float> lo00 = default, hi00 = default, lo01 = default, hi01 = default, lo10 = default, hi10 = default, lo11 = default, hi11 = default;
            for (int k = 0; k < f; k++)
            {
                var a0 = Vector512.Create(act0[k]);
                var a1 = Vector512.Create(act1[k]);
                var c = Vector512.Load((uint*)(w0 + k));
                Vector512<float> l = Low(c), u = High(c);
                lo00 = Vector512.FusedMultiplyAdd(a0, l, lo00);
                hi00 = Vector512.FusedMultiplyAdd(a0, u, hi00);
                lo10 = Vector512.FusedMultiplyAdd(a1, l, lo10);
                hi10 = Vector512.FusedMultiplyAdd(a1, u, hi10);
                c = Vector512.Load((uint*)(w1 + k));
                l = Low(c);
                u = High(c);
                lo01 = Vector512.FusedMultiplyAdd(a0, l, lo01);
                hi01 = Vector512.FusedMultiplyAdd(a0, u, hi01);
                lo11 = Vector512.FusedMultiplyAdd(a1, l, lo11);
                hi11 = Vector512.FusedMultiplyAdd(a1, u, hi11);
            }
            int at = tile * ChunkShorts;
            lo00.Store(y0 + at); hi00.Store(y0 + at + Lanes);
            lo01.Store(y0 + at + ChunkShorts); hi01.Store(y0 + at + ChunkShorts + Lanes);
            lo10.Store(y1 + at); hi10.Store(y1 + at + Lanes);
            lo11.Store(y1 + at + ChunkShorts); hi11.Store(y1 + at + ChunkShorts + Lanes);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Down4(float* act, float* y0, float* y1, float* y2, float* y3)
    {
        int f = _ffn;
        for (int tile = 0; tile < _hidden / ChunkShorts; tile++)
        {
            var w = (Vector512<uint>*)(_down + (long)tile * f * ChunkShorts);
            Vector512<float> lo0 = default, hi0 = default, lo1 = default, hi1 = default, lo2 = default, hi2 = default, lo3 = default, hi3 = default;
            for (int k = 0; k < f; k++)
            {
                var c = Vector512.Load((uint*)(w + k));
                Vector512<float> l = Low(c), u = High(c);
                var a = Vector512.Create(act[k]);
                lo0 = Vector512.FusedMultiplyAdd(a, l, lo0);
                hi0 = Vector512.FusedMultiplyAdd(a, u, hi0);
                a = Vector512.Create(act[f + k]);
                lo1 = Vector512.FusedMultiplyAdd(a, l, lo1);
                hi1 = Vector512.FusedMultiplyAdd(a, u, hi1);
                a = Vector512.Create(act[2 * f + k]);
                lo2 = Vector512.FusedMultiplyAdd(a, l, lo2);
                hi2 = Vector512.FusedMultiplyAdd(a, u, hi2);
                a = Vector512.Create(act[3 * f + k]);
                lo3 = Vector512.FusedMultiplyAdd(a, l, lo3);
                hi3 = Vector512.FusedMultiplyAdd(a, u, hi3);
            }
            int at = tile * ChunkShorts;
            lo0.Store(y0 + at); hi0.Store(y0 + at + Lanes);
            lo1.Store(y1 + at); hi1.Store(y1 + at + Lanes);
            lo2.Store(y2 + at); hi2.Store(y2 + at + Lanes);
            lo3.Store(y3 + at); hi3.Store(y3 + at + Lanes);
        }
    }

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    ~Bf16SwiGluKernel() => Free();

    private void Free()
    {
        NativeMemory.AlignedFree(_gateUp);
        NativeMemory.AlignedFree(_down);
        _gateUp = null;
        _down = null;
    }
}
