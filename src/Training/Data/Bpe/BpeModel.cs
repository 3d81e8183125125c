namespace MoeServe.Training.Data.Bpe;

/// <summary>
/// A trained byte-level BPE model. <see cref="Tokens"/> are in id order, written in
/// <see cref="ByteLevelAlphabet"/>: ids 0-255 are the bytes 0-255, then one token per new merge result.
/// <see cref="Merges"/> are in rank order. The special tokens come after <see cref="Tokens"/>.
/// </summary>
public sealed record BpeModel(IReadOnlyList<string> Tokens, IReadOnlyList<(string Left, string Right)> Merges);
