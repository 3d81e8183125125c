namespace MoeServe.Training.Data;

/// <summary>Finds the repository root (the folder holding MoeServe.sln) so that default paths work from any folder inside it.</summary>
internal static class RepositoryRoot
{
    private const string Marker = "MoeServe.sln";

    /// <summary>From the current directory upwards (how `dotnet run` is used), then from the executable's folder.</summary>
    public static string Find() =>
        Find(Directory.GetCurrentDirectory()) ?? Find(AppContext.BaseDirectory)
        ?? throw new DirectoryNotFoundException($"{Marker} not found above {Directory.GetCurrentDirectory()}; pass --out");

    private static string? Find(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, Marker))) return dir.FullName;
        return null;
    }
}
