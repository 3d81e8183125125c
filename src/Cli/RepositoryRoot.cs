namespace MoeServe.Cli;

/// <summary>Finds the repository root so that default paths work from any working directory inside it.</summary>
public static class RepositoryRoot
{
    private const string Marker = "MoeServe.sln";

    /// <summary>The nearest folder at or above <paramref name="start"/> that holds MoeServe.sln, or null.</summary>
    public static string? Find(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, Marker))) return dir.FullName;
        return null;
    }

    /// <summary>A path as people should read it in reports: relative to the repository root when inside it.</summary>
    public static string Display(string path)
    {
        string? root = Find(Directory.GetCurrentDirectory()) ?? Find(AppContext.BaseDirectory);
        if (root is null) return path;
        string relative = Path.GetRelativePath(root, path);
        return relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? path : relative;
    }

    /// <summary>
    /// Resolves a repository-relative path: first from the current directory upwards (how `dotnet run`
    /// is used), then from the executable's folder upwards (a binary run from elsewhere).
    /// </summary>
    public static string Resolve(string relative)
    {
        string? root = Find(Directory.GetCurrentDirectory()) ?? Find(AppContext.BaseDirectory);
        if (root is null)
            throw new DirectoryNotFoundException($"{Marker} not found above {Directory.GetCurrentDirectory()}; pass an explicit path");
        return Path.Combine(root, relative);
    }
}
