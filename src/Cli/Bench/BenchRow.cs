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
    double? OtherProcessesCpuPercent);
