using MoeServe.Inference.Tokenization;

namespace MoeServe.Cli.Eval;

/// <summary>
/// Turns a train/ or held-out text into the token ids the model was trained on: the model's tokenizer
/// (special-token strings map to their ids, as ChatML documents need) and a BOS only if the checkpoint
/// asks for one. docs/training-data-format.md: `&lt;|endoftext|&gt;` ends every document, and the data
/// command writes it into the text, so predicting it is part of the document's likelihood. It is
/// appended where a text lacks it; with a tokenizer that has no such special token (the random default
/// model's) the literal marker is removed instead, since it would otherwise be scored as a dozen
/// ordinary byte tokens that no document really contains.
/// </summary>
public sealed class DocumentEncoder(ModelTokenizer tokenizer, int contextTokens)
{
    public const string EndOfText = "<|endoftext|>";

    private readonly int? _endOfText = tokenizer.SpecialTokens.TryGetValue(EndOfText, out int id) ? id : null;

    /// <summary>Longest sequence the model attends over; longer documents are cut to their start.</summary>
    public int ContextTokens { get; } = contextTokens;

    /// <summary>Whether documents end with the end marker (the tokenizer knows &lt;|endoftext|&gt;).</summary>
    public bool AppendsEndOfText => _endOfText is not null;

    public ModelTokenizer Tokenizer => tokenizer;

    /// <summary>The whole document's ids (counting unigram frequencies wants all of them).</summary>
    public int[] Encode(string text)
    {
        if (_endOfText is null && text.EndsWith(EndOfText, StringComparison.Ordinal)) text = text[..^EndOfText.Length];
        var ids = tokenizer.Encode(text, tokenizer.AddBosToPrompts);
        if (_endOfText is int end && (ids.Length == 0 || ids[^1] != end)) ids = [.. ids, end];
        return ids;
    }

    /// <summary>The document as the model scores it: at most <see cref="ContextTokens"/> ids.</summary>
    public (int[] Ids, bool Truncated) EncodeForContext(string text)
    {
        var ids = Encode(text);
        return ids.Length <= ContextTokens ? (ids, false) : (ids[..ContextTokens], true);
    }
}
