namespace MoeServe.Training.Data.Scripture;

/// <summary>The "scripture" domain (kind text): KJV chapters, every 33rd held out.</summary>
public static class ScriptureDomain
{
    public const string Name = "scripture";

    public static DomainData Build()
    {
        var chapters = KjvChapters.Group(KjvSource.ReadAll());
        return new DomainData(
            Name,
            "text",
            KjvSource.Description(KjvSource.PackageVersion()),
            KjvSource.License,
            chapters.Where(c => !KjvChapters.IsHeldout(c)).Select(c => DocumentText.Of(c.Text)).ToList(),
            chapters.Where(KjvChapters.IsHeldout).Select(c => DocumentText.Of(c.Text)).ToList(),
            Tasks: null);
    }
}
