using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>
/// Root-mean-square layer norm as Hugging Face computes it: statistics in fp32, the scale applied in the
/// input dtype. Parameter "weight" ([N], initialised to ones).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    public RmsNorm(long size, double eps) : base(nameof(RmsNorm))
    {
        weight = new Parameter(torch.ones(size));
        _eps = eps;
        RegisterComponents();
    }

    /// <param name="x">[..., N] any float dtype.</param>
    /// <returns>[..., N] same dtype as <paramref name="x"/>.</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to(ScalarType.Float32);
        var inverseRms = x32.square().mean([-1L], keepdim: true).add(_eps).rsqrt(); // [..., 1] fp32
        var normed = x32 * inverseRms;
        if (normed.dtype != x.dtype) normed = normed.to(x.dtype);
        return (weight * normed).MoveToOuterDisposeScope();
    }
}
