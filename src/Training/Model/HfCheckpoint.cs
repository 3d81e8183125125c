using System.Text.Json;
using System.Text.Json.Nodes;
using MoeServe.Inference.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>
/// Writes and reads the training model as a Hugging Face Mixtral checkpoint folder: config.json,
/// generation_config.json and a single model.safetensors whose keys are the model's parameter names.
/// </summary>
public static class HfCheckpoint
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Writes config.json, generation_config.json and model.safetensors into <paramref name="dir"/>.</summary>
    /// <param name="extraConfig">Optional additional config.json fields (e.g. router_aux_loss_coef).</param>
    public static void Save(MixtralForCausalLM model, string dir, SafetensorsDtype dtype, int? padTokenId = null,
        IReadOnlyDictionary<string, JsonNode?>? extraConfig = null)
    {
        Directory.CreateDirectory(dir);
        var config = ConfigJson(model.Config, dtype);
        foreach (var (key, value) in extraConfig ?? new Dictionary<string, JsonNode?>()) config[key] = value?.DeepClone();
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString(Indented) + "\n");
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), GenerationConfigJson(model.Config, padTokenId).ToJsonString(Indented) + "\n");
        SaveWeights(model, Path.Combine(dir, "model.safetensors"), dtype);
    }

    /// <summary>Writes every parameter under its own name (the Hugging Face key).</summary>
    public static void SaveWeights(MixtralForCausalLM model, string path, SafetensorsDtype dtype)
    {
        var parameters = model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).ToList();
        SafetensorsWriter.Write(path, parameters, dtype);
    }

    /// <summary>Copies the tensors of a model.safetensors (any stored dtype) into the model's parameters; every key must match.</summary>
    public static void LoadWeights(MixtralForCausalLM model, string dir)
    {
        using var store = WeightStore.Open(dir);
        using var noGrad = torch.no_grad();
        foreach (var (name, parameter) in model.named_parameters())
        {
            using var stored = store.Load(name, parameter.shape, parameter.dtype, parameter.device);
            parameter.copy_(stored);
        }
    }

    /// <summary>Hugging Face MixtralConfig fields for <paramref name="config"/>.</summary>
    public static JsonObject ConfigJson(ModelConfig config, SafetensorsDtype dtype) => new()
    {
        ["architectures"] = new JsonArray("MixtralForCausalLM"),
        ["model_type"] = "mixtral",
        ["vocab_size"] = config.VocabSize,
        ["hidden_size"] = config.HiddenSize,
        ["intermediate_size"] = config.IntermediateSize,
        ["num_hidden_layers"] = config.NumLayers,
        ["num_attention_heads"] = config.NumHeads,
        ["num_key_value_heads"] = config.NumKvHeads,
        ["head_dim"] = config.HeadDim,
        ["num_local_experts"] = config.NumExperts,
        ["num_experts_per_tok"] = config.ExpertsPerToken,
        ["hidden_act"] = "silu",
        ["max_position_embeddings"] = config.MaxPositionEmbeddings,
        ["rms_norm_eps"] = config.RmsNormEps,
        ["rope_theta"] = config.RopeTheta,
        ["rope_scaling"] = null,
        ["sliding_window"] = null,
        ["attention_dropout"] = 0.0,
        ["router_jitter_noise"] = 0.0,
        ["output_router_logits"] = false,
        ["initializer_range"] = 0.02,
        ["tie_word_embeddings"] = false,
        ["use_cache"] = true,
        ["torch_dtype"] = dtype == SafetensorsDtype.BF16 ? "bfloat16" : "float32",
        ["bos_token_id"] = config.BosTokenId,
        ["eos_token_id"] = EosNode(config.EosTokenIds),
    };

    private static JsonObject GenerationConfigJson(ModelConfig config, int? padTokenId)
    {
        var json = new JsonObject
        {
            ["bos_token_id"] = config.BosTokenId,
            ["eos_token_id"] = EosNode(config.EosTokenIds),
        };
        if (padTokenId is int pad) json["pad_token_id"] = pad;
        return json;
    }

    private static JsonNode? EosNode(IReadOnlyList<int> ids) => ids.Count switch
    {
        0 => null,
        1 => JsonValue.Create(ids[0]),
        _ => new JsonArray(ids.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()),
    };
}
