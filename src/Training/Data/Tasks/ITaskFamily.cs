namespace MoeServe.Training.Data.Tasks;

/// <summary>A generator of exact-answer items; one domain of kind "task" per family.</summary>
public interface ITaskFamily
{
    /// <summary>The domain name: file names and manifest entry.</summary>
    string Name { get; }

    /// <summary>One random item; all randomness comes from <paramref name="random"/>.</summary>
    TaskItem Generate(DeterministicRandom random);
}
