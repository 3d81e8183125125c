namespace MoeServe.Inference.Sampling;

/// <summary>How the next token is chosen, as an OpenAI request states it (already validated).</summary>
public sealed record SamplingParameters
{
    /// <summary>0 means greedy (argmax).</summary>
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    /// <summary>0 or less disables top-k filtering.</summary>
    public int TopK { get; init; }
    public long? Seed { get; init; }
    public double PresencePenalty { get; init; }
    public double FrequencyPenalty { get; init; }
    /// <summary>How many most-likely alternatives to report per token (0 = none).</summary>
    public int TopLogprobs { get; init; }

    public bool IsGreedy => Temperature < 1e-5;
}
