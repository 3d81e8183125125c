using System.Text.RegularExpressions;

namespace MoeServe.Training.Data.Bpe;

/// <summary>
/// Splits text the way the server's loader (ModelTokenizer: RegexPreTokenizer with the special tokens)
/// does before BPE: special tokens are cut out whole, the rest is split by the GPT-2 regex. Training
/// on any other split would learn merges the loader never applies.
/// </summary>
public static class PreTokenizer
{
    /// <summary>The ByteLevel pre-tokenizer's pattern (use_regex = true); same string and options as ModelTokenizer.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly Regex Pattern = new(Gpt2Pattern, RegexOptions.Compiled);

    /// <summary>The pieces of <paramref name="text"/>: special tokens and the ordinary text between them, in order.</summary>
    public static IEnumerable<(string Piece, bool IsSpecial)> SplitSpecials(string text)
    {
        int start = 0;
        while (start < text.Length)
        {
            var (at, special) = NextSpecial(text, start);
            if (at < 0) { yield return (text[start..], false); yield break; }
            if (at > start) yield return (text[start..at], false);
            yield return (special!, true);
            start = at + special!.Length;
        }
    }

    /// <summary>How often each pre-token occurs in the ordinary text of <paramref name="documents"/>.</summary>
    public static Dictionary<string, long> CountWords(IEnumerable<string> documents)
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        // Span lookups: no string is allocated for the millions of repeated pre-tokens.
        var lookup = counts.GetAlternateLookup<ReadOnlySpan<char>>();
        foreach (var document in documents)
            foreach (var (piece, isSpecial) in SplitSpecials(document))
            {
                if (isSpecial) continue;
                foreach (var match in Pattern.EnumerateMatches(piece))
                {
                    var word = piece.AsSpan(match.Index, match.Length);
                    lookup[word] = lookup.TryGetValue(word, out long n) ? n + 1 : 1;
                }
            }
        return counts;
    }

    private static (int At, string? Special) NextSpecial(string text, int start)
    {
        int best = -1;
        string? found = null;
        foreach (var special in SpecialTokens.All)
        {
            int at = text.IndexOf(special, start, StringComparison.Ordinal);
            if (at >= 0 && (best < 0 || at < best)) (best, found) = (at, special);
        }
        return (best, found);
    }
}
