using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MoeServe.Training.Model;

/// <summary>
/// Autocast-style mixed precision by hand (TorchSharp has no autocast): parameters stay float32 (the
/// optimizer's master copy), matrix multiplies run in the compute dtype, and everything numerically
/// delicate (RMSNorm statistics, router softmax, the residual stream, softmax cross-entropy) stays float32.
/// With bfloat16 a CPU matmul is about twice as fast as float32 (AVX-512 BF16); with float32 nothing is cast.
/// </summary>
public static class MixedPrecision
{
    /// <summary>x W^T with both operands in <paramref name="dtype"/>; the gradient reaches the float32 weight through the cast.</summary>
    /// <param name="x">[..., in] any float dtype.</param>
    /// <returns>[..., out] in <paramref name="dtype"/>.</returns>
    public static Tensor Linear(Tensor x, Linear layer, ScalarType dtype) =>
        F.linear(Cast(x, dtype), Cast(layer.weight!, dtype));

    /// <summary>The tensor itself when it already has <paramref name="dtype"/>, else a converted copy.</summary>
    public static Tensor Cast(Tensor t, ScalarType dtype) => t.dtype == dtype ? t : t.to(dtype);
}
