using MoeServe.Inference.Checkpoint;

namespace MoeServe.Training.Model;

/// <summary>The sizes of the model this project trains, as the inference side's <see cref="ModelConfig"/>.</summary>
public static class MixtralConfigs
{
    /// <summary>
    /// A Mixtral-architecture model of about 10M parameters (with a 4096-token vocabulary): hidden 256,
    /// 4 layers, 8 query / 4 key-value heads of 32, 8 experts of FFN 512, top-2, context 1024.
    /// </summary>
    public static ModelConfig Default(int vocabSize, int? bosTokenId, IReadOnlyList<int> eosTokenIds) => new()
    {
        ModelType = "mixtral",
        VocabSize = vocabSize,
        HiddenSize = 256,
        IntermediateSize = 512,
        NumLayers = 4,
        NumHeads = 8,
        NumKvHeads = 4,
        HeadDim = 32,
        NumExperts = 8,
        ExpertsPerToken = 2,
        RmsNormEps = 1e-5,
        RopeTheta = 10000.0,
        MaxPositionEmbeddings = 1024,
        TieWordEmbeddings = false,
        RenormalizeTopK = true,
        HasQkNorm = false,
        BosTokenId = bosTokenId,
        EosTokenIds = eosTokenIds,
        TorchDtype = "bfloat16",
    };

    /// <summary>Every checkpoint key of a Mixtral model of <paramref name="config"/> and its shape (Hugging Face names).</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> CheckpointShapes(ModelConfig config)
    {
        long v = config.VocabSize, h = config.HiddenSize, f = config.IntermediateSize;
        long q = (long)config.NumHeads * config.HeadDim, kv = (long)config.NumKvHeads * config.HeadDim;
        var shapes = new List<(string, long[])> { ("model.embed_tokens.weight", [v, h]) };
        for (int i = 0; i < config.NumLayers; i++)
        {
            string p = $"model.layers.{i}";
            shapes.Add(($"{p}.input_layernorm.weight", [h]));
            shapes.Add(($"{p}.self_attn.q_proj.weight", [q, h]));
            shapes.Add(($"{p}.self_attn.k_proj.weight", [kv, h]));
            shapes.Add(($"{p}.self_attn.v_proj.weight", [kv, h]));
            shapes.Add(($"{p}.self_attn.o_proj.weight", [h, q]));
            shapes.Add(($"{p}.post_attention_layernorm.weight", [h]));
            shapes.Add(($"{p}.block_sparse_moe.gate.weight", [config.NumExperts, h]));
            for (int e = 0; e < config.NumExperts; e++)
            {
                shapes.Add(($"{p}.block_sparse_moe.experts.{e}.w1.weight", [f, h]));
                shapes.Add(($"{p}.block_sparse_moe.experts.{e}.w2.weight", [h, f]));
                shapes.Add(($"{p}.block_sparse_moe.experts.{e}.w3.weight", [f, h]));
            }
        }
        shapes.Add(("model.norm.weight", [h]));
        shapes.Add(("lm_head.weight", [v, h]));
        return shapes;
    }
}
