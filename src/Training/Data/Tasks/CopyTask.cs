namespace MoeServe.Training.Data.Tasks;

/// <summary>Repeat a sequence of 3-8 random words or letters exactly.</summary>
public sealed class CopyTask : ITaskFamily
{
    private static readonly string[] Templates = ["Repeat exactly: {0}", "Copy this sequence: {0}", "Say this back word for word: {0}"];

    public string Name => "copy";

    public TaskItem Generate(DeterministicRandom random)
    {
        var pool = random.Next(2) == 0 ? WordLists.Common : WordLists.Letters;
        int length = random.Next(3, 8);
        // Drawn with replacement: repeats ("b k b") are part of copying exactly.
        string sequence = string.Join(' ', Enumerable.Range(0, length).Select(_ => random.Pick(pool)));
        return new TaskItem(sequence, string.Format(random.Pick(Templates), sequence), sequence);
    }
}
