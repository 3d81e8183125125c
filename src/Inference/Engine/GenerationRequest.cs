using MoeServe.Inference.Sampling;
using MoeServe.Routing;

namespace MoeServe.Inference.Engine;

/// <summary>One sequence to generate, validated by the API layer. n choices are n requests.</summary>
public sealed record GenerationRequest
{
    public required int[] PromptIds { get; init; }
    public required SamplingParameters Sampling { get; init; }
    public required int MaxTokens { get; init; }
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Report the logprob of every prompt token (legacy echo + logprobs).</summary>
    public bool PromptLogprobs { get; init; }
    /// <summary>Keep generating past EOS (benchmarks that need a fixed output length).</summary>
    public bool IgnoreEos { get; init; }
    public RoutingPolicy Policy { get; init; } = RoutingPolicy.Vanilla;
    /// <summary>Capacity factor gamma of capacity-aware policies (ignored by the others).</summary>
    public double CapacityFactor { get; init; } = 1.0;
    /// <summary>Label for metrics and logs.</summary>
    public string RequestId { get; init; } = Guid.NewGuid().ToString("N");
}
