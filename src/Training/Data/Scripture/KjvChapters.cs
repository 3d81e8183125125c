namespace MoeServe.Training.Data.Scripture;

/// <summary>One chapter: the training document unit of the scripture domain.</summary>
public sealed record Chapter(int Index, string Book, int Number, string Text);

/// <summary>Groups verses into chapter documents and picks the held-out chapters.</summary>
public static class KjvChapters
{
    /// <summary>Every 33rd chapter (36 of 1189, 3%) is held out. The rule ignores the seed on purpose:
    /// perplexity on scripture stays comparable between data sets built with different seeds.</summary>
    public const int HeldoutEvery = 33;

    public static bool IsHeldout(Chapter chapter) => chapter.Index % HeldoutEvery == HeldoutEvery - 1;

    /// <summary>
    /// One document per chapter, one verse per line without its reference. Chapters run from 2 verses
    /// (Psalm 117, ~200 characters) to 176 (Psalm 119, ~11 KB); the trainer cuts its own windows.
    /// </summary>
    public static List<Chapter> Group(IReadOnlyList<Verse> verses)
    {
        var chapters = new List<Chapter>();
        int start = 0;
        for (int i = 1; i <= verses.Count; i++)
        {
            if (i < verses.Count && verses[i].Book == verses[start].Book && verses[i].Chapter == verses[start].Chapter) continue;
            var lines = verses.Skip(start).Take(i - start).Select(v => v.Text);
            chapters.Add(new Chapter(chapters.Count, verses[start].Book, verses[start].Chapter, string.Join('\n', lines)));
            start = i;
        }
        return chapters;
    }
}
