using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Parallel;
using MoeServe.Routing;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>Pre-norm transformer block: x + attn(norm(x)), then h + moe(norm(h)).</summary>
public sealed class DecoderLayer : IDisposable
{
    public RmsNorm input_layernorm { get; }
    public Attention self_attn { get; }
    public RmsNorm post_attention_layernorm { get; }
    public SparseMoeBlock moe { get; }

    private readonly int _layer;

    public DecoderLayer(ModelConfig config, int layer, WeightStore weights, ScalarType dtype, ScalarType expertDtype, Device device,
        ExpertParallelPlan plan, WorkerThreads? workers, WorkerThreads?[] expertThreads, bool batchInvariant)
    {
        _layer = layer;
        string prefix = $"model.layers.{layer}";
        long h = config.HiddenSize;
        input_layernorm = new RmsNorm(weights.Load($"{prefix}.input_layernorm.weight", [h], dtype, device), config.RmsNormEps);
        self_attn = new Attention(config, layer, $"{prefix}.self_attn", weights, dtype, device, batchInvariant);
        post_attention_layernorm = new RmsNorm(weights.Load($"{prefix}.post_attention_layernorm.weight", [h], dtype, device), config.RmsNormEps);
        string moePrefix = config.ModelType == "mixtral" ? $"{prefix}.block_sparse_moe" : $"{prefix}.mlp";
        moe = new SparseMoeBlock(config, moePrefix, weights, dtype, expertDtype, device, plan.Placement.Replicas[layer], plan.Devices, workers, expertThreads);
    }

    /// <param name="x">[T, H] residual stream, compute dtype.</param>
    /// <returns>[T, H] the residual stream after this layer.</returns>
    public Tensor Forward(Tensor x, RotaryEmbedding rope, AttentionInput attention, BatchRouting routing, StepRoutingStats stats)
    {
        using var scope = NewDisposeScope();
        // Explicit alpha: the + operator converts 1 to a Scalar the GC may finalize during the call (see Scalars).
        var h = x.add(self_attn.Forward(input_layernorm.Forward(x), rope, attention), Scalars.One);
        var output = h.add(moe.Forward(post_attention_layernorm.Forward(h), routing, _layer, stats), Scalars.One);
        return output.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        input_layernorm.Dispose();
        self_attn.Dispose();
        post_attention_layernorm.Dispose();
        moe.Dispose();
    }
}
