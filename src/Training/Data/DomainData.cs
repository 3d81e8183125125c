using MoeServe.Training.Data.Tasks;

namespace MoeServe.Training.Data;

/// <summary>One domain's documents, as the manifest describes it. <see cref="Tasks"/> is set for kind "task".</summary>
public sealed record DomainData(
    string Name,
    string Kind,
    string Source,
    string License,
    IReadOnlyList<string> Train,
    IReadOnlyList<string> Heldout,
    IReadOnlyList<TaskItem>? Tasks)
{
    public long TrainChars => Train.Sum(t => (long)t.Length);
    public long HeldoutChars => Heldout.Sum(t => (long)t.Length);
}

/// <summary>Token counts of one domain's train and held-out documents under the written tokenizer.</summary>
public sealed record DomainTokens(TokenTally Train, TokenTally Heldout);

/// <summary>
/// Characters and tokens of a set of documents. Tokens count special tokens one each; the Text*
/// figures leave the special tokens out (a 12-character "&lt;|im_start|&gt;" is one token and would
/// flatter the compression of chat documents).
/// </summary>
public sealed class TokenTally
{
    public long Chars { get; private set; }
    public long Tokens { get; private set; }
    public long TextChars { get; private set; }
    public long TextTokens { get; private set; }

    public void Add(long chars, long tokens, long textChars, long textTokens)
    {
        Chars += chars;
        Tokens += tokens;
        TextChars += textChars;
        TextTokens += textTokens;
    }

    public double TextCharsPerToken => TextTokens == 0 ? 0 : (double)TextChars / TextTokens;
}
