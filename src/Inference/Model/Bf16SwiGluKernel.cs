using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MoeServe.Inference.Model;

/// <summary>
/// The SwiGLU experts of one layer on the CPU, float32 arithmetic on weights held as bfloat16, in one managed call per
/// expert: gate and up products, SiLU(gate) x up, and the down product, reading each weight once per block of 8, 4, 2
/// or 1 rows.
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
        int h = _hidden, f = _ffn;
        int gateTiles = f / Lanes, downTiles = h / ChunkShorts;
        int first = 0;
        for (; rows - first >= 8; first += 8)
        {
            float* x = input + (long)first * h, y = output + (long)first * h;
            Rows8(_gateUp, gateTiles, h, x, h, scratch, f, Lanes, _upOffset);
            Activate(scratch, 8);
            Rows8(_down, downTiles, f, scratch, f, y, h, ChunkShorts, Lanes);
        }
        for (; first < rows; first += 4)
        {
            int count = Math.Min(4, rows - first);
            float* x = input + (long)first * h, y = output + (long)first * h;
            float* a0 = scratch, a1 = scratch + f, a2 = scratch + 2L * f, a3 = scratch + 3L * f;
            switch (count)
            {
                case 1:
                    Rows1(_gateUp, gateTiles, h, x, a0, Lanes, _upOffset);
                    Activate(scratch, 1);
                    Rows1(_down, downTiles, f, a0, y, ChunkShorts, Lanes);
                    break;
                case 2:
                    Rows2(_gateUp, gateTiles, h, x, x + h, a0, a1, Lanes, _upOffset);
                    Activate(scratch, 2);
                    Rows2(_down, downTiles, f, a0, a1, y, y + h, ChunkShorts, Lanes);
                    break;
                default:
                    // Three rows run as four with the last repeated; its results are discarded (written to scratch).
                    float* x3 = count == 4 ? x + 3L * h : x + 2L * h;
                    float* y3 = count == 4 ? y + 3L * h : scratch + 2L * _upOffset;
                    Rows4(_gateUp, gateTiles, h, x, x + h, x + 2L * h, x3, a0, a1, a2, a3, Lanes, _upOffset);
                    Activate(scratch, count);
                    Rows4(_down, downTiles, f, a0, a1, a2, a3, y, y + h, y + 2L * h, y3, ChunkShorts, Lanes);
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

    // The products. Both are tiles of 64-byte chunks, one chunk per input (depth: H for gate-up, F for down), each
    // chunk two vectors of 16 outputs: for gate-up, a tile's gate units (low halves) and up units (high); for down,
    // hidden units 0-15 and 16-31 of a tile of 32. A row's two vectors go to out + tile x tileStep and that + hiOffset.
    // The one-row kernel keeps four independent multiply-add chains (two tiles), which reach the rate the weights
    // stream from the last-level cache (measured: four tiles at once were slower); the others keep eight or sixteen,
    // enough to hide the instruction's latency.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows1(ushort* weights, int tiles, int depth, float* x, float* out0, int tileStep, int hiOffset)
    {
        for (int tile = 0; tile < tiles; tile += 2)
        {
            var w0 = (Vector512<uint>*)(weights + (long)tile * depth * ChunkShorts);
            var w1 = w0 + depth;
            Vector512<float> lo0 = default, hi0 = default, lo1 = default, hi1 = default;
            for (int k = 0; k < depth; k++)
            {
                var a = Vector512.Create(x[k]);
                var c = Vector512.Load((uint*)(w0 + k));
                lo0 = Vector512.FusedMultiplyAdd(a, Low(c), lo0);
                hi0 = Vector512.FusedMultiplyAdd(a, High(c), hi0);
                c = Vector512.Load((uint*)(w1 + k));
                lo1 = Vector512.FusedMultiplyAdd(a, Low(c), lo1);
                hi1 = Vector512.FusedMultiplyAdd(a, High(c), hi1);
            }
            float* at = out0 + tile * tileStep;
            lo0.Store(at); hi0.Store(at + hiOffset);
            lo1.Store(at + tileStep); hi1.Store(at + tileStep + hiOffset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows2(ushort* weights, int tiles, int depth, float* x0, float* x1, float* out0, float* out1, int tileStep, int hiOffset)
    {
        for (int tile = 0; tile < tiles; tile += 2)
        {
            var w0 = (Vector512<uint>*)(weights + (long)tile * depth * ChunkShorts);
            var w1 = w0 + depth;
            Vector512<float> lo00 = default, hi00 = default, lo01 = default, hi01 = default, lo10 = default, hi10 = default, lo11 = default, hi11 = default;
            for (int k = 0; k < depth; k++)
            {
                var a0 = Vector512.Create(x0[k]);
                var a1 = Vector512.Create(x1[k]);
                var c = Vector512.Load((uint*)(w0 + k));
                Vector512<float> lo = Low(c), hi = High(c);
                lo00 = Vector512.FusedMultiplyAdd(a0, lo, lo00);
                hi00 = Vector512.FusedMultiplyAdd(a0, hi, hi00);
                lo10 = Vector512.FusedMultiplyAdd(a1, lo, lo10);
                hi10 = Vector512.FusedMultiplyAdd(a1, hi, hi10);
                c = Vector512.Load((uint*)(w1 + k));
                lo = Low(c);
                hi = High(c);
                lo01 = Vector512.FusedMultiplyAdd(a0, lo, lo01);
                hi01 = Vector512.FusedMultiplyAdd(a0, hi, hi01);
                lo11 = Vector512.FusedMultiplyAdd(a1, lo, lo11);
                hi11 = Vector512.FusedMultiplyAdd(a1, hi, hi11);
            }
            int at = tile * tileStep;
            lo00.Store(out0 + at); hi00.Store(out0 + at + hiOffset);
            lo01.Store(out0 + at + tileStep); hi01.Store(out0 + at + tileStep + hiOffset);
            lo10.Store(out1 + at); hi10.Store(out1 + at + hiOffset);
            lo11.Store(out1 + at + tileStep); hi11.Store(out1 + at + tileStep + hiOffset);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows4(ushort* weights, int tiles, int depth, float* x0, float* x1, float* x2, float* x3,
        float* out0, float* out1, float* out2, float* out3, int tileStep, int hiOffset)
    {
        for (int tile = 0; tile < tiles; tile++)
        {
            var w = (Vector512<uint>*)(weights + (long)tile * depth * ChunkShorts);
            Vector512<float> lo0 = default, hi0 = default, lo1 = default, hi1 = default, lo2 = default, hi2 = default, lo3 = default, hi3 = default;
            for (int k = 0; k < depth; k++)
            {
                var c = Vector512.Load((uint*)(w + k));
                Vector512<float> lo = Low(c), hi = High(c);
                var a = Vector512.Create(x0[k]);
                lo0 = Vector512.FusedMultiplyAdd(a, lo, lo0);
                hi0 = Vector512.FusedMultiplyAdd(a, hi, hi0);
                a = Vector512.Create(x1[k]);
                lo1 = Vector512.FusedMultiplyAdd(a, lo, lo1);
                hi1 = Vector512.FusedMultiplyAdd(a, hi, hi1);
                a = Vector512.Create(x2[k]);
                lo2 = Vector512.FusedMultiplyAdd(a, lo, lo2);
                hi2 = Vector512.FusedMultiplyAdd(a, hi, hi2);
                a = Vector512.Create(x3[k]);
                lo3 = Vector512.FusedMultiplyAdd(a, lo, lo3);
                hi3 = Vector512.FusedMultiplyAdd(a, hi, hi3);
            }
            int at = tile * tileStep;
            lo0.Store(out0 + at); hi0.Store(out0 + at + hiOffset);
            lo1.Store(out1 + at); hi1.Store(out1 + at + hiOffset);
            lo2.Store(out2 + at); hi2.Store(out2 + at + hiOffset);
            lo3.Store(out3 + at); hi3.Store(out3 + at + hiOffset);
        }
    }

    /// <param name="x">[8, depth] rows, row stride <paramref name="xStride"/>.</param>
    /// <param name="output">Row r's outputs from output + r x <paramref name="outStride"/>.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows8(ushort* weights, int tiles, int depth, float* x, int xStride, float* output, int outStride, int tileStep, int hiOffset)
    {
        for (int tile = 0; tile < tiles; tile++)
        {
            var w = (Vector512<uint>*)(weights + (long)tile * depth * ChunkShorts);
            Vector512<float> lo0 = default, hi0 = default, lo1 = default, hi1 = default, lo2 = default, hi2 = default, lo3 = default, hi3 = default;
            Vector512<float> lo4 = default, hi4 = default, lo5 = default, hi5 = default, lo6 = default, hi6 = default, lo7 = default, hi7 = default;
            for (int k = 0; k < depth; k++)
            {
                var c = Vector512.Load((uint*)(w + k));
                Vector512<float> lo = Low(c), hi = High(c);
                float* column = x + k;
                var a = Vector512.Create(column[0]);
                lo0 = Vector512.FusedMultiplyAdd(a, lo, lo0);
                hi0 = Vector512.FusedMultiplyAdd(a, hi, hi0);
                a = Vector512.Create(column[xStride]);
                lo1 = Vector512.FusedMultiplyAdd(a, lo, lo1);
                hi1 = Vector512.FusedMultiplyAdd(a, hi, hi1);
                a = Vector512.Create(column[2 * xStride]);
                lo2 = Vector512.FusedMultiplyAdd(a, lo, lo2);
                hi2 = Vector512.FusedMultiplyAdd(a, hi, hi2);
                a = Vector512.Create(column[3 * xStride]);
                lo3 = Vector512.FusedMultiplyAdd(a, lo, lo3);
                hi3 = Vector512.FusedMultiplyAdd(a, hi, hi3);
                a = Vector512.Create(column[4 * xStride]);
                lo4 = Vector512.FusedMultiplyAdd(a, lo, lo4);
                hi4 = Vector512.FusedMultiplyAdd(a, hi, hi4);
                a = Vector512.Create(column[5 * xStride]);
                lo5 = Vector512.FusedMultiplyAdd(a, lo, lo5);
                hi5 = Vector512.FusedMultiplyAdd(a, hi, hi5);
                a = Vector512.Create(column[6 * xStride]);
                lo6 = Vector512.FusedMultiplyAdd(a, lo, lo6);
                hi6 = Vector512.FusedMultiplyAdd(a, hi, hi6);
                a = Vector512.Create(column[7 * xStride]);
                lo7 = Vector512.FusedMultiplyAdd(a, lo, lo7);
                hi7 = Vector512.FusedMultiplyAdd(a, hi, hi7);
            }
            float* at = output + tile * tileStep;
            lo0.Store(at); hi0.Store(at + hiOffset);
            lo1.Store(at + outStride); hi1.Store(at + outStride + hiOffset);
            lo2.Store(at + 2 * outStride); hi2.Store(at + 2 * outStride + hiOffset);
            lo3.Store(at + 3 * outStride); hi3.Store(at + 3 * outStride + hiOffset);
            lo4.Store(at + 4 * outStride); hi4.Store(at + 4 * outStride + hiOffset);
            lo5.Store(at + 5 * outStride); hi5.Store(at + 5 * outStride + hiOffset);
            lo6.Store(at + 6 * outStride); hi6.Store(at + 6 * outStride + hiOffset);
            lo7.Store(at + 7 * outStride); hi7.Store(at + 7 * outStride + hiOffset);
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
