namespace MoeServe.Training.Data.Tasks;

/// <summary>
/// One family's items. <see cref="Heldout"/> feeds both tasks/&lt;family&gt;.jsonl (question and answer)
/// and heldout/&lt;family&gt;.jsonl (line i is the conversation of item i, then &lt;|endoftext|&gt;); <see cref="Train"/> never
/// contains a held-out problem. <see cref="Excluded"/> counts training draws dropped for that reason.
/// </summary>
public sealed record TaskSet(ITaskFamily Family, IReadOnlyList<TaskItem> Heldout, IReadOnlyList<TaskItem> Train, int Excluded);

public static class TaskSetBuilder
{
    /// <summary>
    /// Draws the held-out items first (distinct problems) from their own random stream, then training
    /// items from another until their documents hold <paramref name="trainChars"/> characters. Training items
    /// may repeat one another (small spaces such as 2-digit products would otherwise run dry).
    /// </summary>
    public static TaskSet Build(ITaskFamily family, long seed, int heldoutCount, long trainChars)
    {
        var heldoutKeys = new HashSet<string>(StringComparer.Ordinal);
        var heldout = new List<TaskItem>(heldoutCount);
        var heldoutRandom = new DeterministicRandom(seed, $"tasks/{family.Name}/heldout");
        for (int draws = 0; heldout.Count < heldoutCount; draws++)
        {
            if (draws > 100 * heldoutCount) throw new InvalidOperationException($"{family.Name}: cannot draw {heldoutCount} distinct items");
            var item = family.Generate(heldoutRandom);
            if (heldoutKeys.Add(item.Key)) heldout.Add(item);
        }

        var train = new List<TaskItem>();
        var trainRandom = new DeterministicRandom(seed, $"tasks/{family.Name}/train");
        long chars = 0;
        int excluded = 0;
        while (chars < trainChars)
        {
            var item = family.Generate(trainRandom);
            if (heldoutKeys.Contains(item.Key)) { excluded++; continue; }
            train.Add(item);
            chars += DocumentText.Of(item.Conversation).Length;
        }
        return new TaskSet(family, heldout, train, excluded);
    }
}
