using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeServe.Inference.Checkpoint;

/// <summary>The subset of a Hugging Face config.json that the Mixtral and OLMoE architectures use.</summary>
public sealed record ModelConfig
{
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int NumExperts { get; init; }
    public required int ExpertsPerToken { get; init; }
    public required double RmsNormEps { get; init; }
    public required double RopeTheta { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public required bool TieWordEmbeddings { get; init; }
    /// <summary>Mixtral always renormalises top-k gate weights; OLMoE follows norm_topk_prob.</summary>
    public required bool RenormalizeTopK { get; init; }
    /// <summary>OLMoE normalises q and k projections (q_norm, k_norm).</summary>
    public required bool HasQkNorm { get; init; }
    /// <summary>OLMoE's optional clamp of q, k, v projections.</summary>
    public double? ClipQkv { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public string? TorchDtype { get; init; }

    public static readonly IReadOnlyList<string> SupportedModelTypes = ["mixtral", "olmoe"];

    /// <summary>Reads and validates config.json in <paramref name="modelDir"/>.</summary>
    public static ModelConfig Load(string modelDir)
    {
        string path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) throw new CheckpointException($"{path}: file not found");
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new JsonException("not an object"); }
        catch (JsonException e) { throw new CheckpointException($"{path}: not valid JSON ({e.Message})"); }

        string modelType = json["model_type"]?.GetValue<string>() ?? throw new CheckpointException($"{path}: missing 'model_type'");
        if (!SupportedModelTypes.Contains(modelType))
            throw new CheckpointException($"{path}: model_type '{modelType}' is not supported (supported: {string.Join(", ", SupportedModelTypes)})");

        int Int(string key, int? fallback = null) =>
            json[key] is JsonValue v ? v.GetValue<int>() : fallback ?? throw new CheckpointException($"{path}: missing '{key}'");
        double Double(string key, double fallback) => json[key] is JsonValue v ? v.GetValue<double>() : fallback;
        bool Bool(string key, bool fallback) => json[key] is JsonValue v ? v.GetValue<bool>() : fallback;

        bool isOlmoe = modelType == "olmoe";
        int hidden = Int("hidden_size"), heads = Int("num_attention_heads");
        var config = new ModelConfig
        {
            ModelType = modelType,
            VocabSize = Int("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size"),
            NumLayers = Int("num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = Int("num_key_value_heads", heads),
            HeadDim = Int("head_dim", hidden / heads),
            NumExperts = isOlmoe ? Int("num_experts") : Int("num_local_experts"),
            ExpertsPerToken = Int("num_experts_per_tok"),
            RmsNormEps = Double("rms_norm_eps", isOlmoe ? 1e-5 : 1e-5),
            RopeTheta = Double("rope_theta", isOlmoe ? 10000 : 1e6),
            MaxPositionEmbeddings = Int("max_position_embeddings", 4096),
            TieWordEmbeddings = Bool("tie_word_embeddings", false),
            RenormalizeTopK = !isOlmoe || Bool("norm_topk_prob", false),
            HasQkNorm = isOlmoe,
            ClipQkv = json["clip_qkv"] is JsonValue c ? c.GetValue<double>() : null,
            BosTokenId = json["bos_token_id"] is JsonValue b ? b.GetValue<int>() : null,
            EosTokenIds = ReadIds(json["eos_token_id"]),
            TorchDtype = json["torch_dtype"]?.GetValue<string>(),
        };
        config.Validate(path);
        return config;
    }

    /// <summary>eos_token_id may be a number or a list of numbers.</summary>
    internal static IReadOnlyList<int> ReadIds(JsonNode? node) => node switch
    {
        JsonArray a => a.Select(x => x!.GetValue<int>()).ToArray(),
        JsonValue v => [v.GetValue<int>()],
        _ => [],
    };

    private void Validate(string path)
    {
        void Require(bool ok, string what) { if (!ok) throw new CheckpointException($"{path}: {what}"); }
        Require(VocabSize > 0 && HiddenSize > 0 && IntermediateSize > 0 && NumLayers > 0, "sizes must be positive");
        Require(NumHeads > 0 && NumKvHeads > 0 && NumHeads % NumKvHeads == 0, "num_attention_heads must be a multiple of num_key_value_heads");
        Require(HeadDim % 2 == 0, "head_dim must be even (rotary embeddings)");
        Require(NumExperts > 0 && ExpertsPerToken > 0 && ExpertsPerToken <= NumExperts, "num_experts_per_tok must be between 1 and the number of experts");
    }
}
