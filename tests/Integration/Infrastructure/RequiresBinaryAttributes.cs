namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>
/// A fact that needs an external program: skipped, with the reason, only when the program is not installed
/// (CI installs it; a missing program must not look like a pass).
/// </summary>
public sealed class RequiresBinaryFactAttribute : FactAttribute
{
    public RequiresBinaryFactAttribute(string path, string package)
    {
        if (!File.Exists(path)) Skip = $"{path} is not installed (Debian package '{package}'); install it to run this test";
    }
}
