using System.Text.Json;
using MoeServe.Cli.Eval;

namespace MoeServe.Cli.Compare;

/// <summary>--json: the <see cref="CompareReport"/> with the eval command's conventions (snake_case, NaN as "NaN").</summary>
public static class CompareJson
{
    public static string Serialize(CompareReport report) => JsonSerializer.Serialize(report, EvalJson.Options);

    public static void Write(CompareReport report, string path)
    {
        ReportFiles.Save(path, Serialize(report));
    }
}
