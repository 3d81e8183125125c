namespace MoeServe.Training.Data.Tasks;

/// <summary>
/// One exact-answer item. <see cref="Key"/> names the problem independently of its phrasing
/// ("12+34"), so a held-out problem is kept out of training in every template, not just the one drawn.
/// </summary>
public sealed record TaskItem(string Key, string Question, string Answer)
{
    /// <summary>The full ChatML conversation: the document text in train/ and heldout/ (before its &lt;|endoftext|&gt;).</summary>
    public string Conversation => ChatMl.Conversation(Question, Answer);
}
