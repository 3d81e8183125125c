namespace MoeServe.Training.Data.Tasks;

/// <summary>Sort 3-7 numbers (0-99, repeats allowed) ascending; the answer is comma-separated like the question.</summary>
public sealed class SortTask : ITaskFamily
{
    private static readonly string[] Templates =
    [
        "Sort these numbers in ascending order: {0}",
        "Put these numbers in order from smallest to largest: {0}",
        "Sort ascending: {0}",
    ];

    public string Name => "sort";

    public TaskItem Generate(DeterministicRandom random)
    {
        int count = random.Next(3, 7);
        var numbers = Enumerable.Range(0, count).Select(_ => random.Next(0, 99)).ToList();
        string list = string.Join(", ", numbers);
        string sorted = string.Join(", ", numbers.Order());
        return new TaskItem(list, string.Format(random.Pick(Templates), list), sorted);
    }
}
