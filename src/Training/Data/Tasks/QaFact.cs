namespace MoeServe.Training.Data.Tasks;

/// <summary>One sentence of a QA passage and the questions it answers, each with a one-word answer from the sentence.</summary>
public sealed record QaFact(string Sentence, IReadOnlyList<(string Question, string Answer)> Questions);

/// <summary>
/// The sentence kinds of a QA passage. Every sentence takes fresh people, places and objects from
/// <see cref="QaCast"/>, so each question has exactly one answer in the passage.
/// </summary>
public static class QaFacts
{
    private static readonly Func<QaCast, DeterministicRandom, QaFact>[] Kinds = [Has, WentTo, LivesIn, Color, Found, Gave];

    public static QaFact Next(QaCast cast, DeterministicRandom random) => random.Pick(Kinds)(cast, random);

    private static QaFact Has(QaCast c, DeterministicRandom r)
    {
        string p = c.Person(), o = c.Object();
        return new($"{p} has the {o}.", [($"Who has the {o}?", p), ($"What does {p} have?", o)]);
    }

    private static QaFact WentTo(QaCast c, DeterministicRandom r)
    {
        string p = c.Person(), l = c.Place();
        return new($"{p} went to {l}.", [($"Where did {p} go?", l), ($"Who went to {l}?", p)]);
    }

    private static QaFact LivesIn(QaCast c, DeterministicRandom r)
    {
        string p = c.Person(), l = c.Place();
        return new($"{p} lives in {l}.", [($"Where does {p} live?", l), ($"Who lives in {l}?", p)]);
    }

    private static QaFact Color(QaCast c, DeterministicRandom r)
    {
        string o = c.Object(), color = r.Pick(WordLists.Colors);
        return new($"The {o} is {color}.", [($"What color is the {o}?", color)]);
    }

    private static QaFact Found(QaCast c, DeterministicRandom r)
    {
        string p = c.Person(), o = c.Object(), l = c.Place();
        return new($"{p} found a {o} in {l}.",
            [($"What did {p} find?", o), ($"Where did {p} find the {o}?", l), ($"Who found a {o}?", p)]);
    }

    private static QaFact Gave(QaCast c, DeterministicRandom r)
    {
        string giver = c.Person(), o = c.Object(), taker = c.Person();
        return new($"{giver} gave the {o} to {taker}.",
            [($"Who gave the {o} to {taker}?", giver), ($"Who received the {o}?", taker), ($"What did {giver} give to {taker}?", o)]);
    }
}

/// <summary>The people, places and objects of one passage, drawn without replacement.</summary>
public sealed class QaCast(DeterministicRandom random, int maxSentences)
{
    private readonly Queue<string> _people = new(random.Sample(WordLists.People, 2 * maxSentences));
    private readonly Queue<string> _places = new(random.Sample(WordLists.Places, maxSentences));
    private readonly Queue<string> _objects = new(random.Sample(WordLists.Objects, maxSentences));

    public string Person() => _people.Dequeue();
    public string Place() => _places.Dequeue();
    public string Object() => _objects.Dequeue();
}
