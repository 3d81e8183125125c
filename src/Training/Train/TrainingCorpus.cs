using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Tokenization;
using MoeServe.Training.Model;

namespace MoeServe.Training.Train;

/// <summary>One domain of the data folder, tokenised: its documents concatenated into one stream per split.</summary>
/// <param name="Train">Every train/&lt;domain&gt;.jsonl document's tokens, in file order (each document ends with its EOS text).</param>
/// <param name="Heldout">The same for heldout/&lt;domain&gt;.jsonl (empty when the domain has none).</param>
public sealed record DomainTokens(string Name, string Kind, string? Source, string? License,
    int[] Train, int[] Heldout, int TrainDocuments, int HeldoutDocuments);

/// <summary>
/// The data folder of docs/training-data-format.md, read for training: manifest.json, the tokenizer, and
/// every domain's train and held-out documents tokenised with it.
/// </summary>
public sealed class TrainingCorpus
{
    public required string DataDir { get; init; }
    public required string TokenizerDir { get; init; }
    public required JsonObject Manifest { get; init; }
    public required ModelTokenizer Tokenizer { get; init; }
    /// <summary>Largest token id in tokenizer.json (vocabulary and added tokens) + 1.</summary>
    public required int VocabSize { get; init; }
    public required int? BosId { get; init; }
    /// <summary>The tokenizer's eos_token first, then the other end-of-sequence ids (e.g. &lt;|im_end|&gt;).</summary>
    public required IReadOnlyList<int> EosIds { get; init; }
    public required int? PadId { get; init; }
    public required IReadOnlyList<DomainTokens> Domains { get; init; }

    public long TrainTokens => Domains.Sum(d => (long)d.Train.Length);

    /// <exception cref="InvalidDataException">The folder does not follow the data contract; the message names the file.</exception>
    public static TrainingCorpus Load(string dataDir, Action<string> log)
    {
        string manifestPath = Path.Combine(dataDir, "manifest.json");
        if (!File.Exists(manifestPath))
            throw new InvalidDataException($"{manifestPath}: file not found (build the data first: moeserve-train data)");
        JsonObject manifest;
        try { manifest = JsonNode.Parse(File.ReadAllText(manifestPath))?.AsObject() ?? throw new JsonException("not an object"); }
        catch (JsonException e) { throw new InvalidDataException($"{manifestPath}: not valid JSON ({e.Message})"); }

        string tokenizerDir = Path.Combine(dataDir, manifest["tokenizer"]?.GetValue<string>() ?? "tokenizer");
        int vocabSize = ReadVocabSize(Path.Combine(tokenizerDir, "tokenizer.json"));
        ModelTokenizer tokenizer;
        try { tokenizer = ModelTokenizer.Load(tokenizerDir, MixtralConfigs.Default(vocabSize, null, [])); }
        catch (CheckpointException e) { throw new InvalidDataException(e.Message); }
        var eos = new List<int>();
        if (tokenizer.EosToken is string eosText && tokenizer.SpecialTokens.TryGetValue(eosText, out int primary)) eos.Add(primary);
        foreach (var name in new[] { "<|endoftext|>", "<|im_end|>" })
            if (tokenizer.SpecialTokens.TryGetValue(name, out int id) && !eos.Contains(id)) eos.Add(id);
        foreach (var id in tokenizer.EosIds.Order()) if (!eos.Contains(id)) eos.Add(id);
        int? pad = tokenizer.SpecialTokens.TryGetValue("<|pad|>", out int p) ? p : null;

        var entries = manifest["domains"]?.AsArray() ?? throw new InvalidDataException($"{manifestPath}: missing 'domains'");
        var domains = new DomainTokens[entries.Count];
        var started = Stopwatch.StartNew();
        // Domains are independent: tokenise them in parallel (one tokenizer instance per worker).
        Parallel.For(0, entries.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, i =>
        {
            var entry = entries[i]?.AsObject() ?? throw new InvalidDataException($"{manifestPath}: domain {i} is not an object");
            string name = entry["name"]?.GetValue<string>() ?? throw new InvalidDataException($"{manifestPath}: domain {i} has no name");
            var worker = i == 0 ? tokenizer : ModelTokenizer.Load(tokenizerDir, MixtralConfigs.Default(vocabSize, null, []));
            var (train, trainDocs) = TokenizeFile(worker, Path.Combine(dataDir, entry["train"]?.GetValue<string>() ?? $"train/{name}.jsonl"), required: true);
            var (heldout, heldoutDocs) = TokenizeFile(worker, Path.Combine(dataDir, entry["heldout"]?.GetValue<string>() ?? $"heldout/{name}.jsonl"), required: false);
            domains[i] = new DomainTokens(name, entry["kind"]?.GetValue<string>() ?? "text", entry["source"]?.GetValue<string>(),
                entry["license"]?.GetValue<string>(), train, heldout, trainDocs, heldoutDocs);
        });
        foreach (var d in domains)
            if (d.Train.Any(t => t < 0 || t >= vocabSize)) throw new InvalidDataException($"domain '{d.Name}': token id outside the vocabulary");
        log($"data: {domains.Length} domains, {domains.Sum(d => (long)d.Train.Length):N0} train / {domains.Sum(d => (long)d.Heldout.Length):N0} held-out tokens " +
            $"(tokenised in {started.Elapsed.TotalSeconds:F1} s)");
        return new TrainingCorpus
        {
            DataDir = dataDir, TokenizerDir = tokenizerDir, Manifest = manifest, Tokenizer = tokenizer, VocabSize = vocabSize,
            BosId = tokenizer.BosId, EosIds = eos, PadId = pad, Domains = domains,
        };
    }

    /// <summary>Concatenates the tokens of every {"text": ...} line of a JSONL file.</summary>
    private static (int[] Tokens, int Documents) TokenizeFile(ModelTokenizer tokenizer, string path, bool required)
    {
        if (!File.Exists(path))
        {
            if (required) throw new InvalidDataException($"{path}: file not found");
            return ([], 0);
        }
        var tokens = new List<int>();
        int documents = 0, lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string text;
            try { text = JsonNode.Parse(line)?["text"]?.GetValue<string>() ?? throw new JsonException("no \"text\" string"); }
            catch (Exception e) when (e is JsonException or InvalidOperationException) { throw new InvalidDataException($"{path}:{lineNumber}: {e.Message}"); }
            tokens.AddRange(tokenizer.Encode(text, addBos: false));
            documents++;
        }
        return (tokens.ToArray(), documents);
    }

    /// <summary>Largest id of model.vocab and added_tokens in a tokenizer.json, plus one.</summary>
    private static int ReadVocabSize(string path)
    {
        if (!File.Exists(path)) throw new InvalidDataException($"{path}: file not found");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        int max = -1;
        if (doc.RootElement.TryGetProperty("model", out var model) && model.TryGetProperty("vocab", out var vocab) && vocab.ValueKind == JsonValueKind.Object)
            foreach (var entry in vocab.EnumerateObject()) max = Math.Max(max, entry.Value.GetInt32());
        if (doc.RootElement.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            foreach (var token in added.EnumerateArray()) max = Math.Max(max, token.GetProperty("id").GetInt32());
        if (max < 0) throw new InvalidDataException($"{path}: no vocabulary");
        return max + 1;
    }
}
