namespace MoeServe.Training.Data.Tasks;

/// <summary>The families `data` builds, in manifest order.</summary>
public static class TaskFamilies
{
    public static IReadOnlyList<ITaskFamily> All { get; } =
        [new ArithmeticTask(), new CopyTask(), new SortTask(), new CountTask(), new QaTask()];
}
