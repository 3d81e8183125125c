using MoeServe.Inference.Checkpoint;
using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>Pre-norm Mixtral block: h = x + attn(norm(x)), then h + moe(norm(h)).</summary>
public sealed class DecoderLayer : nn.Module<Tensor, RotaryTables, MoeOutput>
{
    private readonly RmsNorm input_layernorm;
    private readonly MixtralAttention self_attn;
    private readonly RmsNorm post_attention_layernorm;
    private readonly SparseMoeBlock block_sparse_moe;

    public DecoderLayer(ModelConfig config, ScalarType compute) : base(nameof(DecoderLayer))
    {
        input_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        self_attn = new MixtralAttention(config, compute);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        block_sparse_moe = new SparseMoeBlock(config, compute);
        RegisterComponents();
    }

    /// <param name="x">[B, L, H] residual stream, float32.</param>
    /// <returns>Output: [B, L, H] float32, the residual stream after this layer (not only the MoE block's
    /// contribution); the MoE block's aux loss and expert counts.</returns>
    public override MoeOutput forward(Tensor x, RotaryTables rope)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], l = x.shape[1], h = x.shape[2];
        // Explicit alpha: the + operator passes a temporary Scalar the GC may finalize mid-call (see Scalars).
        var attended = x.add(self_attn.forward(input_layernorm.forward(x), rope), Scalars.One); // promoted to float32
        var moe = block_sparse_moe.forward(post_attention_layernorm.forward(attended).view(b * l, h));
        var output = attended.add(moe.Output.view(b, l, h), Scalars.One);
        return new MoeOutput(output.MoveToOuterDisposeScope(), moe.AuxLoss.MoveToOuterDisposeScope(), moe.ExpertCounts);
    }
}
