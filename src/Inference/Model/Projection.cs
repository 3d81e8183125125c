using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// A bias-free linear layer, y = x Wᵀ, that keeps its weight transposed ([in, out], contiguous) and runs
/// x @ W. libtorch's linear over the checkpoint's [out, in] layout takes a slower matrix-vector path on
/// CPU; measured on one core with weights out of cache (microseconds, linear vs x @ Wᵀ): lm_head
/// [4096, 256] at 1 row 609 vs 217, at 16 rows 1124 vs 894; qkv [512, 256] at 1 row 83 vs 62.
/// On CPU, a float32 weight that float16 holds without loss (a checkpoint stored in bfloat16 or float16) runs
/// FBGEMM's packed float16 product instead (<see cref="HalfPackedGemm"/>): the same weights and float32
/// arithmetic, in another kernel, faster again.
/// </summary>
public sealed class Projection : IDisposable
{
    /// <summary>
    /// Fewest rows a product runs with: fewer are padded with zero rows. libtorch's float32 CPU product takes
    /// another kernel for 1 to 3 rows than for 4 or more, so a row's result would otherwise depend on how many
    /// rows share the call (measured: bit-identical rows from 4 rows up, differences of 1e-7 below).
    /// </summary>
    public const int BatchInvariantRows = 4;

    /// <param name="weight">[out, in] as the checkpoint stores it; copied, the caller keeps it.</param>
    /// <param name="minRows">Pad calls of fewer rows to this many (see <see cref="BatchInvariantRows"/>); 1: never. Only libtorch's product pads.</param>
    /// <param name="packable">Whether the weight may run FBGEMM's packed product where it qualifies (float32 on
    /// CPU, held by float16 without loss (<see cref="HalfPackedGemm.HoldsLosslessly"/>), FBGEMM available). That
    /// product gives a row the same bits whatever rows share the call (tested), so it needs no padding.</param>
    public Projection(Tensor weight, int minRows = 1, bool packable = true)
    {
        MinRows = minRows;
        if (weight.dim() != 2) throw new ArgumentException($"a projection weight is [out, in], got [{string.Join(", ", weight.shape)}]");
        if (packable && weight.dtype == ScalarType.Float32 && weight.device.type == DeviceType.CPU
            && HalfPackedGemm.Available && HalfPackedGemm.HoldsLosslessly(weight))
        {
            Packed = HalfPackedGemm.Pack(weight).DetachFromDisposeScope();
            _zeroBias = torch.zeros(weight.shape[0]).DetachFromDisposeScope();
            Transposed = torch.empty(0).DetachFromDisposeScope();
            return;
        }
        Transposed = weight.t().contiguous().DetachFromDisposeScope();
    }

    /// <summary>[in, out] compute dtype; empty when <see cref="Packed"/>.</summary>
    public Tensor Transposed { get; }

    /// <summary>The weight packed for FBGEMM's float16 product, or null.</summary>
    public Tensor? Packed { get; }

    private readonly Tensor? _zeroBias; // [out] float32, FBGEMM's product takes a bias

    public int MinRows { get; }

    /// <param name="x">[..., in] compute dtype.</param>
    /// <returns>[..., out] compute dtype.</returns>
    public Tensor Forward(Tensor x)
    {
        if (Packed is not null) return HalfPackedGemm.Linear(x, Packed, _zeroBias!); // row-invariant: no padding needed
        // MinRows first: the default (1) must not pay for reading the shape on every call.
        if (MinRows <= 1 || x.dim() != 2 || x.size(0) >= MinRows) return x.matmul(Transposed);
        long rows = x.size(0);
        using var scope = NewDisposeScope();
        var padded = torch.cat([x, x.new_zeros(MinRows - rows, x.size(1))], 0); // [MinRows, in]
        return padded.matmul(Transposed).narrow(0, 0, rows).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Transposed.Dispose();
        Packed?.Dispose();
        _zeroBias?.Dispose();
    }
}
