using System.Text.Json;

namespace MoeServe.Api.OpenAi;

/// <summary>Body of POST /v1/completions (legacy OpenAI completions; top_k and moe_routing are extensions).</summary>
public sealed record CompletionRequest
{
    public string? Model { get; init; }
    /// <summary>A string, a list of strings, a list of token ids, or a list of token-id lists.</summary>
    public JsonElement? Prompt { get; init; }
    /// <summary>Most tokens to generate (default 16).</summary>
    public int? MaxTokens { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    public long? Seed { get; init; }
    public JsonElement? Stop { get; init; }
    public int? N { get; init; }
    public double? PresencePenalty { get; init; }
    public double? FrequencyPenalty { get; init; }
    /// <summary>Legacy logprobs: how many alternatives per token (0 to 5 in OpenAI; up to 20 here).</summary>
    public int? Logprobs { get; init; }
    /// <summary>Include the prompt in the returned text (and its logprobs).</summary>
    public bool? Echo { get; init; }
    public bool? Stream { get; init; }
    public StreamOptionsDto? StreamOptions { get; init; }
    public string? User { get; init; }
    public MoeRoutingRequestDto? MoeRouting { get; init; }
    /// <summary>Extension (as in vLLM): keep generating past the end-of-sequence token.</summary>
    public bool? IgnoreEos { get; init; }
}
