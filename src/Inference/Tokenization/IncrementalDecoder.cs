namespace MoeServe.Inference.Tokenization;

/// <summary>
/// Turns a growing list of generated ids into text deltas for streaming. A byte-level token can end in
/// the middle of a UTF-8 character; such text (ending in U+FFFD) is held back until the next token completes it.
/// </summary>
public sealed class IncrementalDecoder(ModelTokenizer tokenizer)
{
    private readonly List<int> _ids = [];
    private int _emittedChars;

    public string Text { get; private set; } = "";

    /// <summary>Adds one token; returns the newly completed text (possibly empty).</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        Text = tokenizer.Decode(_ids);
        if (Text.EndsWith('\uFFFD')) return "";
        var delta = Text.Length > _emittedChars ? Text[_emittedChars..] : "";
        _emittedChars = Math.Max(_emittedChars, Text.Length);
        return delta;
    }

    /// <summary>Text decoded but not yet returned by <see cref="Add"/> (at the end of generation).</summary>
    public string Flush()
    {
        var rest = Text.Length > _emittedChars ? Text[_emittedChars..] : "";
        _emittedChars = Text.Length;
        return rest;
    }
}
