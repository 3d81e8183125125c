namespace MoeServe.Training.Data.Scripture;

/// <summary>One verse as `bible` prints it: book abbreviation ("Ge", "1Sm"), chapter, verse, text without the reference.</summary>
public sealed record Verse(string Book, int Chapter, int Number, string Text);
