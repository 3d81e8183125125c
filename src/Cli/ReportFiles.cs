using OxyPlot;

namespace MoeServe.Cli;

/// <summary>Writes a command's report files, creating their folder, and says so on stderr.</summary>
public static class ReportFiles
{
    /// <param name="command">The subcommand's name, the prefix of its stderr lines.</param>
    public static void WriteText(string command, string path, string text)
    {
        Save(path, text);
        Console.Error.WriteLine($"{command}: wrote {path}");
    }

    /// <summary>Writes the file, creating its folder, without a word.</summary>
    public static void Save(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, text);
    }

    /// <summary>Exports one OxyPlot model as a standalone SVG document.</summary>
    public static void WriteSvg(PlotModel model, string path, int width, int height)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var stream = File.Create(path);
        new SvgExporter { Width = width, Height = height }.Export(model, stream);
    }
}
