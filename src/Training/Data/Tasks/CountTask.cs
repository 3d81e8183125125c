namespace MoeServe.Training.Data.Tasks;

/// <summary>How many words are in a short list (2-9 distinct words); the answer is the number in digits.</summary>
public sealed class CountTask : ITaskFamily
{
    private static readonly string[] Templates =
    [
        "How many words are in this list? {0}",
        "Count the words: {0}",
        "{0}\nHow many words is that?",
    ];

    public string Name => "count";

    public TaskItem Generate(DeterministicRandom random)
    {
        int count = random.Next(2, 9);
        // Distinct words, so "how many words" cannot be read as "how many different words".
        string list = string.Join(", ", random.Sample(WordLists.Common, count));
        return new TaskItem(list, string.Format(random.Pick(Templates), list), count.ToString());
    }
}
