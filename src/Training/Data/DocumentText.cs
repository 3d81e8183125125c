namespace MoeServe.Training.Data;

/// <summary>
/// The text of one train/ or heldout/ document. The contract says the .jsonl text is exactly what the
/// model trains on and that &lt;|endoftext|&gt; ends every document, so the marker is part of the text:
/// the trainer concatenates documents as they are, and learns where a document (or a chat) stops.
/// </summary>
public static class DocumentText
{
    public static string Of(string body) => body + SpecialTokens.EndOfText;
}
