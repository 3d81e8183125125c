namespace MoeServe.Training.Data.Tasks;

/// <summary>
/// A 2-4 sentence passage about invented people, places and objects, then a question whose answer
/// is one word of the passage ("Who has the lamp?" -> "Mara").
/// </summary>
public sealed class QaTask : ITaskFamily
{
    private const int MaxSentences = 4;

    private static readonly string[] Templates =
    [
        "{0}\n{1}",
        "Read the story and answer with one word.\n{0}\nQuestion: {1}",
        "Story: {0}\nQ: {1}",
    ];

    public string Name => "qa";

    public TaskItem Generate(DeterministicRandom random)
    {
        var cast = new QaCast(random, MaxSentences);
        var facts = Enumerable.Range(0, random.Next(2, MaxSentences)).Select(_ => QaFacts.Next(cast, random)).ToList();
        string passage = string.Join(' ', facts.Select(f => f.Sentence));
        var (question, answer) = random.Pick(random.Pick(facts).Questions);
        return new TaskItem($"{passage}|{question}", string.Format(random.Pick(Templates), passage, question), answer);
    }
}
