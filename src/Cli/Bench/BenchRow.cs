using static TorchSharp.torch;

namespace MoeServe.Cli.Bench;

/// <summary>The measurements of one (dtype, batch) configuration; throughputs are medians over repeats.</summary>
public sealed record BenchRow(
    ScalarType Dtype,
    int Batch,
    int PromptTokens,
    int DecodeTokens,
    double PrefillTokensPerSecond,
    double DecodeTokensPerSecond,
    double DecodeStepP50Ms,
    double DecodeStepP99Ms,
    long PeakRssBytes,
    long PrefillRssDeltaBytes,
    long DecodeRssDeltaBytes,
    long KvCacheBytes,
    double LoadSeconds,
    double? OtherProcessesCpuPercent)
{
    public MoeServe.Routing.RoutingPolicy Policy { get; init; } = MoeServe.Routing.RoutingPolicy.Vanilla;
    /// <summary>Median over decode steps of the routing policy's time, summed over layers.</summary>
    public double DecodeRoutingP50Ms { get; init; }
    /// <summary>Dtype of the expert weights and products (Model:ExpertDtype's choice).</summary>
    public ScalarType ExpertDtype { get; init; }

    /// <summary>The compute dtype, and the experts' where they differ: "float32 (experts float16)".</summary>
    public string DtypeLabel => BenchSettings.DtypeLabel(Dtype, ExpertDtype);
}
