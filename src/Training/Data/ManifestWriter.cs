using System.Text.Json;

namespace MoeServe.Training.Data;

/// <summary>
/// manifest.json as docs/training-data-format.md specifies it. Fields beyond the contract
/// (vocab_size, heldout_chars, train_tokens, heldout_tokens, tasks_items) are additions readers may ignore.
/// No timestamps or paths of this machine: the file must be identical for a seed.
/// </summary>
public static class ManifestWriter
{
    public static void Write(string outDir, DataSettings settings, int vocabSize,
        IReadOnlyList<(DomainData Domain, DomainTokens Tokens)> domains)
    {
        JsonFiles.Write(Path.Combine(outDir, DataLayout.Manifest), w =>
        {
            w.WriteStartObject();
            w.WriteNumber("seed", settings.Seed);
            w.WriteString("tokenizer", DataLayout.TokenizerDir);
            w.WriteNumber("vocab_size", vocabSize);
            w.WriteStartArray("domains");
            foreach (var (domain, tokens) in domains) WriteDomain(w, domain, tokens);
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private static void WriteDomain(Utf8JsonWriter w, DomainData domain, DomainTokens tokens)
    {
        w.WriteStartObject();
        w.WriteString("name", domain.Name);
        w.WriteString("kind", domain.Kind);
        w.WriteString("source", domain.Source);
        w.WriteString("license", domain.License);
        w.WriteString("train", DataLayout.Train(domain.Name));
        w.WriteString("heldout", DataLayout.Heldout(domain.Name));
        if (domain.Tasks is not null) w.WriteString("tasks", DataLayout.Tasks(domain.Name));
        w.WriteNumber("train_documents", domain.Train.Count);
        w.WriteNumber("heldout_documents", domain.Heldout.Count);
        w.WriteNumber("train_chars", domain.TrainChars);
        w.WriteNumber("heldout_chars", domain.HeldoutChars);
        w.WriteNumber("train_tokens", tokens.Train.Tokens);
        w.WriteNumber("heldout_tokens", tokens.Heldout.Tokens);
        if (domain.Tasks is not null) w.WriteNumber("tasks_items", domain.Tasks.Count);
        w.WriteEndObject();
    }
}
