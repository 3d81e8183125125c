using MoeServe.Inference.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MoeServe.Training.Model;

/// <summary>One SwiGLU expert: w2(silu(w1 x) * w3 x). w1, w3: [F, H]; w2: [H, F]; no biases.</summary>
public sealed class MixtralExpert : nn.Module<Tensor, Tensor>
{
    private readonly Linear w1, w2, w3;
    private readonly ScalarType _compute;

    public MixtralExpert(ModelConfig config, ScalarType compute) : base(nameof(MixtralExpert))
    {
        _compute = compute;
        w1 = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: false);
        w2 = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: false);
        w3 = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: false);
        RegisterComponents();
    }

    /// <param name="x">[n, H] the tokens routed to this expert, in the compute dtype.</param>
    /// <returns>[n, H] in the compute dtype.</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // w1 and w3 stacked into one [2F, H] matrix: one larger matmul instead of two (the cast to the compute
        // dtype copies the weights anyway). The gradient splits back into w1 and w3 through the cat.
        var gateUp = F.linear(x, MixedPrecision.Cast(torch.cat([w1.weight!, w3.weight!], 0), _compute)).chunk(2, 1); // 2 x [n, F]
        return MixedPrecision.Linear(F.silu(gateUp[0]) * gateUp[1], w2, _compute).MoveToOuterDisposeScope();
    }
}
