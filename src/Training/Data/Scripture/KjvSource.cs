using System.ComponentModel;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace MoeServe.Training.Data.Scripture;

/// <summary>
/// Reads the King James Version from Debian's bible-kjv-text package through its `bible` program
/// (package bible-kjv), one verse per output line: "Ge1:1 In the beginning ...".
/// </summary>
public static partial class KjvSource
{
    public const string Program = "bible";
    public const string Range = "gen1:1-rev22:21";
    public const string TextPackage = "bible-kjv-text";
    /// <summary>The number of verses in the KJV; a different count means the output format changed.</summary>
    public const int ExpectedVerses = 31102;

    public static string Description(string? packageVersion) =>
        $"King James Version (Authorized Version, 1611), Debian package {TextPackage}{(packageVersion is null ? "" : " " + packageVersion)}, read with `{Program} -f \"{Range}\"`";

    public const string License =
        "public domain (/usr/share/doc/bible-kjv-text/copyright: \"The copyright for the King James Version text of the Bible is expired\")";

    [GeneratedRegex(@"^(?<book>\d?[A-Za-z]+)(?<chapter>\d+):(?<verse>\d+) (?<text>.*)$")]
    private static partial Regex VerseLine();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    /// <exception cref="InvalidOperationException">`bible` is missing, failed, or printed something unexpected.</exception>
    public static IReadOnlyList<Verse> ReadAll()
    {
        string output = RunBible();
        var verses = new List<Verse>(ExpectedVerses);
        int lineNumber = 0;
        foreach (var line in output.Split('\n'))
        {
            lineNumber++;
            if (line.Length == 0) continue;
            verses.Add(Parse(line, lineNumber));
        }
        if (verses.Count != ExpectedVerses)
            throw new InvalidOperationException($"`{Program} -f {Range}` printed {verses.Count} verses, expected {ExpectedVerses}");
        return verses;
    }

    /// <summary>The installed version of bible-kjv-text for the manifest, or null when dpkg cannot tell.</summary>
    public static string? PackageVersion()
    {
        try
        {
            var (code, stdout, _) = Run("dpkg-query", ["-W", "-f=${Version}", TextPackage]);
            return code == 0 && stdout.Length > 0 ? stdout.Trim() : null;
        }
        catch (Win32Exception) { return null; }
    }

    private static Verse Parse(string line, int lineNumber)
    {
        var m = VerseLine().Match(line);
        if (!m.Success) throw new InvalidOperationException($"`{Program}` output line {lineNumber} is not a verse: \"{line}\"");
        // The text has a few stray double and trailing spaces (Josh 7:2, Rev 19:3); they are typing
        // artefacts, not structure, so runs of whitespace become one space.
        string text = Whitespace().Replace(m.Groups["text"].Value, " ").Trim();
        return new Verse(m.Groups["book"].Value, int.Parse(m.Groups["chapter"].Value), int.Parse(m.Groups["verse"].Value), text);
    }

    private static string RunBible()
    {
        int code;
        string stdout, stderr;
        try
        {
            (code, stdout, stderr) = Run(Program, ["-f", Range]);
        }
        catch (Win32Exception)
        {
            throw new InvalidOperationException(
                $"`{Program}` was not found: the scripture domain needs the King James Version from Debian; install it with `apt-get install bible-kjv` (it pulls in {TextPackage})");
        }
        if (code != 0)
            throw new InvalidOperationException($"`{Program} -f {Range}` exited with {code}: {stderr.Trim()} (is {TextPackage} installed? `apt-get install bible-kjv`)");
        return stdout;
    }

    private static (int Code, string Stdout, string Stderr) Run(string program, string[] args)
    {
        var info = new ProcessStartInfo(program, args)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(info)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout, stderrTask.Result);
    }
}
