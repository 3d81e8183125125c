using MoeServe.Inference.Model;
using static TorchSharp.torch;

namespace MoeServe.Cli.Bench;

/// <summary>What the bench command measures, parsed and validated from the command line.</summary>
public sealed record BenchSettings
{
    public required string ModelDir { get; init; }
    public required IReadOnlyList<ScalarType> Dtypes { get; init; }
    public required IReadOnlyList<int> Batches { get; init; }
    /// <summary>Routing policies to run every (dtype, batch) row under (capacity factor 1.0).</summary>
    public IReadOnlyList<MoeServe.Routing.RoutingPolicy> Policies { get; init; } = [MoeServe.Routing.RoutingPolicy.Vanilla];
    /// <summary>Enforce capacity on the decode steps too (the server's Routing:ApplyToDecode).</summary>
    public bool ApplyToDecode { get; init; }
    public required int PromptTokens { get; init; }
    public required int DecodeTokens { get; init; }
    public required int Repeats { get; init; }
    /// <summary>Decode steps of the discarded warm-up pass (kernels selected, allocator primed).</summary>
    public int WarmupDecodeTokens => Math.Min(DecodeTokens, 16);
    /// <summary>Intra-op threads to set, or null for libtorch's default.</summary>
    public int? Threads { get; init; }
    public string? MarkdownFile { get; init; }
    /// <summary>Model:ExpertDtype: auto (the server's default), float32, bfloat16 or float16.</summary>
    public string ExpertDtype { get; init; } = ExpertPrecision.Auto;
    /// <summary>Seed of the pseudo-random prompts, so that every run routes the same tokens.</summary>
    public int Seed { get; init; } = 1234;

    /// <summary>Accepts the names people type: float32/fp32, bfloat16/bf16, float16/fp16.</summary>
    public static ScalarType ParseDtype(string name) => name.Trim().ToLowerInvariant() switch
    {
        "float32" or "fp32" or "f32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "fp16" or "f16" or "half" => ScalarType.Float16,
        _ => throw new ArgumentException($"unknown dtype '{name}' (use float32, bfloat16 or float16)"),
    };

    /// <summary>The compute dtype, and the experts' where they differ: "float32 (experts float16)".</summary>
    public static string DtypeLabel(ScalarType compute, ScalarType experts) =>
        experts == compute ? DtypeName(compute) : $"{DtypeName(compute)} (experts {DtypeName(experts)})";

    public static string DtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => dtype.ToString(),
    };

    public static int ElementSize(ScalarType dtype) => dtype == ScalarType.Float32 ? 4 : 2;
}
