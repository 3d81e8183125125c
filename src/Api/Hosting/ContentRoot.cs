namespace MoeServe.Api.Hosting;

/// <summary>
/// Finds the folder that holds appsettings.json and models/: the working directory when it has them
/// (a checkout's root, or /app in the container), else the nearest ancestor of the program's folder
/// (dotnet run from anywhere inside the repository).
/// </summary>
public static class ContentRoot
{
    public static string Find()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "appsettings.json")) && Directory.Exists(Path.Combine(dir.FullName, "models")))
                    return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
