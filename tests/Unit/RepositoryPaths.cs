namespace MoeServe.Unit.Tests;

/// <summary>Locates the repository root (the folder holding MoeServe.sln) from the test's output folder.</summary>
public static class RepositoryPaths
{
    public static string Root { get; } = FindRoot();

    public static string DefaultModel => Path.Combine(Root, "models", "moeserve-tiny-random");

    public static string Fixture(string name) => Path.Combine(Root, "tests", "fixtures", name);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MoeServe.sln"))) return dir.FullName;
        throw new InvalidOperationException("MoeServe.sln not found above " + AppContext.BaseDirectory);
    }
}
