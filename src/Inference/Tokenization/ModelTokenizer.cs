using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using MoeServe.Inference.Checkpoint;

namespace MoeServe.Inference.Tokenization;

/// <summary>
/// The checkpoint's tokenizer: a byte-level BPE tokenizer.json or a SentencePiece tokenizer.model,
/// loaded with Microsoft.ML.Tokenizers, plus the special tokens and chat template the checkpoint declares.
/// </summary>
public sealed class ModelTokenizer
{
    // GPT-2's pre-tokenisation pattern: the default of a ByteLevel pre-tokenizer with use_regex = true.
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly Tokenizer _tokenizer;
    private readonly Dictionary<string, int> _specialTokens;
    private readonly HashSet<int> _specialIds;

    public int? BosId { get; }
    public IReadOnlySet<int> EosIds { get; }
    public bool AddBosToPrompts { get; }
    public ChatTemplate ChatTemplate { get; }
    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>Whether ids decode piece by piece: the text of a run of ids is the concatenation of each id's bytes
    /// (byte-level BPE), so a window of ids decodes the same whatever precedes it. SentencePiece is not: its
    /// decoder drops the space of the word-start marker depending on where in the run the token falls.</summary>
    public bool DecodesPieceByPiece { get; }

    private ModelTokenizer(Tokenizer tokenizer, Dictionary<string, int> specialTokens, int? bosId, IReadOnlySet<int> eosIds,
        bool addBos, string? bosToken, string? eosToken, ChatTemplate template, bool decodesPieceByPiece)
    {
        DecodesPieceByPiece = decodesPieceByPiece;
        _tokenizer = tokenizer;
        _specialTokens = specialTokens;
        _specialIds = specialTokens.Values.ToHashSet();
        BosId = bosId;
        EosIds = eosIds;
        AddBosToPrompts = addBos;
        BosToken = bosToken;
        EosToken = eosToken;
        ChatTemplate = template;
    }

    public IReadOnlyDictionary<string, int> SpecialTokens => _specialTokens;

    /// <summary>Loads the tokenizer of <paramref name="modelDir"/>; EOS ids also come from config.json.</summary>
    public static ModelTokenizer Load(string modelDir, ModelConfig config)
    {
        string jsonPath = Path.Combine(modelDir, "tokenizer.json");
        string spmPath = Path.Combine(modelDir, "tokenizer.model");
        var tokenizerConfig = ReadJson(Path.Combine(modelDir, "tokenizer_config.json"));
        var generationConfig = ReadJson(Path.Combine(modelDir, "generation_config.json"));

        JsonObject? tokenizerJson = File.Exists(jsonPath) ? ReadJson(jsonPath) : null;
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in tokenizerJson?["added_tokens"]?.AsArray() ?? [])
            if (t?["content"]?.GetValue<string>() is string content && t["id"] is JsonValue id)
                specials[content] = id.GetValue<int>();

        Tokenizer tokenizer;
        bool byteLevelBpe = tokenizerJson?["model"]?["type"]?.GetValue<string>() == "BPE" && UsesByteLevel(tokenizerJson);
        if (byteLevelBpe) tokenizer = CreateByteLevelBpe(jsonPath, tokenizerJson!, specials);
        else if (File.Exists(spmPath))
        {
            if (specials.Count == 0) AddSentencePieceSpecials(specials, tokenizerConfig, spmPath);
            using var stream = File.OpenRead(spmPath);
            // BOS is added by this class (from add_bos_token), never by the SentencePiece model itself.
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false,
                specialTokens: specials.Count > 0 ? specials : null);
        }
        else if (tokenizerJson is not null)
            throw new CheckpointException($"{jsonPath}: only byte-level BPE tokenizer.json is supported; add the SentencePiece tokenizer.model");
        else throw new CheckpointException($"{jsonPath}: file not found (nor tokenizer.model)");

        string? bosToken = TokenText(tokenizerConfig?["bos_token"]);
        string? eosToken = TokenText(tokenizerConfig?["eos_token"]);
        int? bosId = bosToken is not null && specials.TryGetValue(bosToken, out var b) ? b : config.BosTokenId;
        var eosIds = new HashSet<int>(config.EosTokenIds);
        foreach (var id in ModelConfig.ReadIds(generationConfig?["eos_token_id"])) eosIds.Add(id);
        if (eosToken is not null && specials.TryGetValue(eosToken, out var e)) eosIds.Add(e);
        bool addBos = tokenizerConfig?["add_bos_token"] is JsonValue ab ? ab.GetValue<bool>() : !byteLevelBpe;

        string? templateText = tokenizerConfig?["chat_template"] switch
        {
            JsonValue v => v.GetValue<string>(),
            JsonArray a => a.FirstOrDefault(x => x?["name"]?.GetValue<string>() == "default")?["template"]?.GetValue<string>(),
            _ => null,
        };
        var template = ChatTemplate.Detect(templateText, specials.Keys, config.ModelType, bosToken, eosToken);
        return new ModelTokenizer(tokenizer, specials, bosId, eosIds, addBos && bosId is not null, bosToken, eosToken, template, byteLevelBpe);
    }

    /// <summary>
    /// Without a tokenizer.json the special tokens come from tokenizer_config.json's added_tokens_decoder,
    /// or else from the SentencePiece model's own unk/bos/eos pieces, so "&lt;s&gt;" in a chat prompt is BOS.
    /// </summary>
    private static void AddSentencePieceSpecials(Dictionary<string, int> specials, JsonObject? tokenizerConfig, string spmPath)
    {
        foreach (var (key, value) in tokenizerConfig?["added_tokens_decoder"]?.AsObject() ?? [])
            if (int.TryParse(key, out int id) && value?["content"]?.GetValue<string>() is string content)
                specials[content] = id;
        if (specials.Count > 0) return;
        using var probe = File.OpenRead(spmPath);
        var model = LlamaTokenizer.Create(probe, addBeginOfSentence: false, addEndOfSentence: false);
        specials[model.UnknownToken] = model.UnknownId;
        specials[model.BeginningOfSentenceToken] = model.BeginningOfSentenceId;
        specials[model.EndOfSentenceToken] = model.EndOfSentenceId;
    }

    private static bool UsesByteLevel(JsonObject json) =>
        json["pre_tokenizer"]?.ToJsonString().Contains("\"ByteLevel\"") == true
        || json["decoder"]?.ToJsonString().Contains("\"ByteLevel\"") == true;

    private static Tokenizer CreateByteLevelBpe(string path, JsonObject json, Dictionary<string, int> specials)
    {
        var model = json["model"]!.AsObject();
        var vocab = model["vocab"]?.AsObject() ?? throw new CheckpointException($"{path}: model.vocab missing");
        var merges = model["merges"]?.AsArray().Select(m => m switch
        {
            JsonArray pair => $"{pair[0]!.GetValue<string>()} {pair[1]!.GetValue<string>()}", // newer [a, b] form
            _ => m!.GetValue<string>(),
        }).ToList() ?? [];
        var options = new BpeOptions(vocab.Select(kv => new KeyValuePair<string, int>(kv.Key, kv.Value!.GetValue<int>())))
        {
            Merges = merges,
            ByteLevel = true,
            SpecialTokens = specials.Count > 0 ? specials : null,
            PreTokenizer = new RegexPreTokenizer(new Regex(FindSplitPattern(json) ?? Gpt2Pattern, RegexOptions.Compiled),
                specials.Count > 0 ? specials : null),
        };
        return BpeTokenizer.Create(options);
    }

    /// <summary>A Split pre-tokenizer's regex (Llama 3, Qwen style) if the file declares one.</summary>
    private static string? FindSplitPattern(JsonObject json)
    {
        var pre = json["pre_tokenizer"];
        var steps = pre?["type"]?.GetValue<string>() == "Sequence" ? pre["pretokenizers"]?.AsArray().ToList() : [pre];
        foreach (var step in steps ?? [])
            if (step?["type"]?.GetValue<string>() == "Split" && step["pattern"]?["Regex"]?.GetValue<string>() is string regex)
                return regex;
        return null;
    }

    private static JsonObject? ReadJson(string path)
    {
        if (!File.Exists(path)) return null;
        try { return JsonNode.Parse(File.ReadAllText(path))?.AsObject(); }
        catch (System.Text.Json.JsonException e) { throw new CheckpointException($"{path}: not valid JSON ({e.Message})"); }
    }

    /// <summary>bos_token / eos_token may be a string or an AddedToken object with "content".</summary>
    private static string? TokenText(JsonNode? node) => node switch
    {
        JsonValue v => v.GetValue<string>(),
        JsonObject o => o["content"]?.GetValue<string>(),
        _ => null,
    };

    /// <summary>Encodes text; special-token strings inside it map to their ids.</summary>
    public int[] Encode(string text, bool addBos)
    {
        var ids = _tokenizer.EncodeToIds(text);
        if (!addBos || BosId is not int bos) return ids.ToArray();
        var result = new int[ids.Count + 1];
        result[0] = bos;
        for (int i = 0; i < ids.Count; i++) result[i + 1] = ids[i];
        return result;
    }

    /// <summary>Decodes ids to text, leaving special tokens out.</summary>
    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids.Where(id => !_specialIds.Contains(id)));

    /// <summary>The text of one token as the legacy logprobs format shows it (special tokens included).</summary>
    public string TokenText(int id) => _specialIds.Contains(id)
        ? _specialTokens.First(kv => kv.Value == id).Key
        : _tokenizer.Decode([id]);

    public bool IsSpecial(int id) => _specialIds.Contains(id);
}
