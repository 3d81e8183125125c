using MoeServe.Cli.Eval;

namespace MoeServe.Cli.Compare;

/// <summary>
/// The whole comparison, plain data: what the table and the plot show, what --json writes, plus each
/// configuration's complete <see cref="EvalResult"/> (per layer, per group, per task family).
/// </summary>
public sealed record CompareReport
{
    public required EvalModelInfo Model { get; init; }
    public required string DataDir { get; init; }
    public required int? MaxDocs { get; init; }
    public required int BatchDocs { get; init; }
    /// <summary>Device counts of the device-imbalance columns.</summary>
    public required IReadOnlyList<int> DeviceCounts { get; init; }
    /// <summary>Held-out documents per domain and items per task family actually run (the same for every row).</summary>
    public required IReadOnlyList<NamedValue> Documents { get; init; }
    public required IReadOnlyList<NamedValue> TaskItems { get; init; }
    public required IReadOnlyList<CompareRow> Rows { get; init; }
    public required int RoutingCalls { get; init; }
    public required IReadOnlyList<TimedInput> RoutingInputs { get; init; }
    public required double Seconds { get; init; }
    public required IReadOnlyList<string> Notes { get; init; }
    public required IReadOnlyList<EvalResult> Evaluations { get; init; }
}
