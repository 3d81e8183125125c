using MoeServe.Inference.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>The result of a training forward pass.</summary>
/// <param name="Logits">[B, L, V] float32 next-token logits.</param>
/// <param name="AuxLoss">Scalar float32: the load-balancing loss averaged over layers.</param>
/// <param name="ExpertCounts">[layer][expert] token-expert assignments in this pass.</param>
public sealed record CausalLMOutput(Tensor Logits, Tensor AuxLoss, long[][] ExpertCounts);

/// <summary>
/// A Mixtral-architecture causal language model for training, with the same semantics as the inference
/// model (MoeServe.Inference.Model.MoeForCausalLM). Its named_parameters() are exactly the Hugging Face
/// checkpoint keys ("model.layers.0.self_attn.q_proj.weight", ..., "lm_head.weight"), so saving is a
/// 1:1 copy. Parameters are float32; matrix multiplies run in <see cref="ComputeDtype"/> (see <see cref="MixedPrecision"/>).
/// </summary>
public sealed class MixtralForCausalLM : nn.Module<Tensor, CausalLMOutput>
{
    private readonly MixtralModel model;
    private readonly Linear lm_head;

    public ModelConfig Config { get; }

    /// <summary>Float32 (exact, the reference) or BFloat16 (matmuls about twice as fast on CPU).</summary>
    public ScalarType ComputeDtype { get; }

    /// <summary>Builds the model and initialises its weights from torch's global generator (seed it first).</summary>
    /// <param name="computeDtype">Dtype of the matrix multiplies: Float32 or BFloat16.</param>
    /// <param name="initStd">Standard deviation of the initial projections and embeddings.</param>
    public MixtralForCausalLM(ModelConfig config, ScalarType computeDtype = ScalarType.Float32, double initStd = 0.02) : base(nameof(MixtralForCausalLM))
    {
        if (computeDtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"compute dtype must be Float32 or BFloat16, got {computeDtype}");
        ComputeDtype = computeDtype;
        if (config.ModelType != "mixtral" || config.HasQkNorm || config.ClipQkv is not null || config.TieWordEmbeddings || !config.RenormalizeTopK)
            throw new ArgumentException("the training model implements Mixtral only (untied embeddings, renormalised top-k, no q/k norm or clipping)");
        Config = config;
        model = new MixtralModel(config, computeDtype);
        lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        InitializeWeights(initStd);
    }

    /// <summary>
    /// Normal(0, std) for embeddings and projections (Hugging Face's initializer_range), ones for norms, and
    /// std / sqrt(2 * layers) for the projections that write into the residual stream (o_proj, w2, as GPT-2),
    /// so the stream's variance does not grow with depth. Visits parameters in registration order, so the
    /// result depends only on the generator's seed.
    /// </summary>
    private void InitializeWeights(double std)
    {
        using var noGrad = torch.no_grad();
        double residualStd = std / Math.Sqrt(2.0 * Config.NumLayers);
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("layernorm.weight", StringComparison.Ordinal) || name == "model.norm.weight") p.fill_(1.0);
            else if (name.EndsWith(".o_proj.weight", StringComparison.Ordinal) || name.EndsWith(".w2.weight", StringComparison.Ordinal)) nn.init.normal_(p, 0, residualStd);
            else nn.init.normal_(p, 0, std);
        }
    }

    /// <param name="ids">[B, L] int64 token ids; every row starts at position 0.</param>
    public override CausalLMOutput forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var decoded = model.forward(ids);
        var logits = MixedPrecision.Cast(MixedPrecision.Linear(decoded.Hidden, lm_head, ComputeDtype), ScalarType.Float32); // [B, L, V] fp32
        var aux = torch.stack(decoded.AuxLosses).mean();
        return new CausalLMOutput(logits.MoveToOuterDisposeScope(), aux.MoveToOuterDisposeScope(), decoded.ExpertCounts);
    }

    /// <summary>Number of trainable values.</summary>
    public long ParameterCount() => parameters().Sum(p => p.numel());
}
