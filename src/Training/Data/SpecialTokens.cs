namespace MoeServe.Training.Data;

/// <summary>The special tokens of docs/training-data-format.md; they take the top ids of the vocabulary in this order.</summary>
public static class SpecialTokens
{
    /// <summary>Ends every document (the last token of each train/ and heldout/ text); the EOS of plain text.</summary>
    public const string EndOfText = "<|endoftext|>";
    public const string ImStart = "<|im_start|>";
    /// <summary>Ends a ChatML turn; also an EOS.</summary>
    public const string ImEnd = "<|im_end|>";
    public const string Pad = "<|pad|>";

    public static readonly IReadOnlyList<string> All = [EndOfText, ImStart, ImEnd, Pad];
}
