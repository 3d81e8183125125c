using MoeServe.Inference.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>The decoder stack's result.</summary>
/// <param name="Hidden">[B, L, H] float32 final normalised hidden states.</param>
/// <param name="AuxLosses">Per layer, the scalar load-balancing loss.</param>
/// <param name="ExpertCounts">[layer][expert] token-expert assignments.</param>
public sealed record DecoderOutput(Tensor Hidden, Tensor[] AuxLosses, long[][] ExpertCounts);

/// <summary>The decoder stack ("model." in checkpoint keys): embed_tokens, layers, norm.</summary>
public sealed class MixtralModel : nn.Module<Tensor, DecoderOutput>
{
    private readonly Embedding embed_tokens;
    private readonly ModuleList<DecoderLayer> layers;
    private readonly RmsNorm norm;
    private readonly ModelConfig _config;

    public MixtralModel(ModelConfig config, ScalarType compute) : base(nameof(MixtralModel))
    {
        _config = config;
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<DecoderLayer>();
        for (int i = 0; i < config.NumLayers; i++) layers.Add(new DecoderLayer(config, compute));
        norm = new RmsNorm(config.HiddenSize, config.RmsNormEps);
        RegisterComponents();
    }

    /// <param name="ids">[B, L] int64 token ids, positions 0..L-1.</param>
    public override DecoderOutput forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        long l = ids.shape[1];
        if (l > _config.MaxPositionEmbeddings)
            throw new ArgumentException($"sequence of {l} tokens exceeds max_position_embeddings {_config.MaxPositionEmbeddings}");
        var rope = RotaryEmbedding.Tables(l, _config.HeadDim, _config.RopeTheta, ids.device);
        var x = embed_tokens.forward(ids); // [B, L, H] fp32 residual stream
        var aux = new Tensor[layers.Count];
        var counts = new long[layers.Count][];
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i].forward(x, rope);
            (x, aux[i], counts[i]) = (layer.Output, layer.AuxLoss.MoveToOuterDisposeScope(), layer.ExpertCounts);
        }
        return new DecoderOutput(norm.forward(x).MoveToOuterDisposeScope(), aux, counts);
    }
}
