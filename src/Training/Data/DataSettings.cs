namespace MoeServe.Training.Data;

/// <summary>What `moeserve-train data` builds and where.</summary>
public sealed record DataSettings(string OutDir, int Seed, int VocabSize)
{
    /// <summary>Held-out items per task family (tasks/ and heldout/ hold the same items).</summary>
    public int HeldoutItemsPerFamily { get; init; } = 300;

    /// <summary>Below this the vocabulary is just the 256 bytes and the special tokens, with no merges.</summary>
    public const int MinVocabSize = 256 + 4 + 1;
}
