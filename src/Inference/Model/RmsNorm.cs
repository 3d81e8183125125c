using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>Root-mean-square layer norm as Hugging Face computes it: statistics in fp32, scale in the input dtype.</summary>
public sealed class RmsNorm(Tensor weight, double eps) : IDisposable
{
    // Held for the model's lifetime: an implicitly converted Scalar may be finalized mid-call (see MoeServe.Routing.Scalars).
    private readonly Scalar _eps = eps.ToScalar();

    /// <summary>[N] learned scale, compute dtype.</summary>
    public Tensor weight { get; } = weight;

    /// <param name="x">[..., N] compute dtype.</param>
    /// <returns>[..., N] compute dtype.</returns>
    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.AsFloat32();
        // x * x, not square(): square() passes the exponent as a temporary Scalar the GC may finalize mid-call (see Scalars).
        // add_ with an explicit alpha: without one, TorchSharp converts a default alpha of 1 to a temporary Scalar each call.
        var inverseRms = x32.mul(x32).mean([-1L], keepdim: true).add_(_eps, MoeServe.Routing.Scalars.One).rsqrt_(); // [..., 1] fp32
        return (weight * (x32 * inverseRms).As(x.dtype)).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        weight.Dispose();
        _eps.Dispose();
    }
}
