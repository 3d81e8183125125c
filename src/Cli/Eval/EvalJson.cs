using System.Text.Json;
using System.Text.Json.Serialization;

namespace MoeServe.Cli.Eval;

/// <summary>
/// The machine-readable form of an <see cref="EvalResult"/>: snake_case keys, every computed property
/// (perplexity, accuracy, max_vio_agg) written next to the numbers it comes from, NaN written as "NaN".
/// </summary>
public static class EvalJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static string Serialize(EvalResult result) => JsonSerializer.Serialize(result, Options);

    public static EvalResult Deserialize(string json) =>
        JsonSerializer.Deserialize<EvalResult>(json, Options) ?? throw new JsonException("empty evaluation result");

    public static void Write(EvalResult result, string path)
    {
        ReportFiles.Save(path, Serialize(result));
    }
}
