using System.Text.Json;

namespace MoeServe.Api.OpenAi;

/// <summary>Body of POST /v1/chat/completions (OpenAI's schema; top_k and moe_routing are extensions).</summary>
public sealed record ChatCompletionRequest
{
    /// <summary>The served model's id (see GET /v1/models).</summary>
    public string? Model { get; init; }
    /// <summary>The conversation: role system, developer, user or assistant; content a string or text parts.</summary>
    public List<ChatMessageDto>? Messages { get; init; }
    /// <summary>Most tokens to generate (legacy name).</summary>
    public int? MaxTokens { get; init; }
    /// <summary>Most tokens to generate.</summary>
    public int? MaxCompletionTokens { get; init; }
    /// <summary>0 to 2; 0 is greedy.</summary>
    public double? Temperature { get; init; }
    /// <summary>Nucleus sampling mass, (0, 1].</summary>
    public double? TopP { get; init; }
    /// <summary>Extension: keep the k most likely tokens (0 or -1 disables).</summary>
    public int? TopK { get; init; }
    /// <summary>Makes sampling reproducible.</summary>
    public long? Seed { get; init; }
    /// <summary>A string or up to 4 strings that end generation (not included in the output).</summary>
    public JsonElement? Stop { get; init; }
    /// <summary>Choices to generate, 1 to 16.</summary>
    public int? N { get; init; }
    /// <summary>-2 to 2.</summary>
    public double? PresencePenalty { get; init; }
    /// <summary>-2 to 2.</summary>
    public double? FrequencyPenalty { get; init; }
    /// <summary>Return the logprob of each output token.</summary>
    public bool? Logprobs { get; init; }
    /// <summary>0 to 20 alternatives per token; needs logprobs = true.</summary>
    public int? TopLogprobs { get; init; }
    /// <summary>Stream chunks as server-sent events.</summary>
    public bool? Stream { get; init; }
    /// <summary>include_usage adds a final chunk with token usage.</summary>
    public StreamOptionsDto? StreamOptions { get; init; }
    /// <summary>Accepted and ignored.</summary>
    public string? User { get; init; }
    /// <summary>Extension: routing policy for this request (must agree with the X-Routing-* headers).</summary>
    public MoeRoutingRequestDto? MoeRouting { get; init; }
    /// <summary>Extension (as in vLLM): keep generating past the end-of-sequence token.</summary>
    public bool? IgnoreEos { get; init; }
}

/// <summary>One chat message; content is a string or a list of {"type": "text", "text": ...} parts.</summary>
public sealed record ChatMessageDto
{
    public string? Role { get; init; }
    public JsonElement? Content { get; init; }
    public string? Name { get; init; }
}

public sealed record StreamOptionsDto
{
    public bool? IncludeUsage { get; init; }
}

/// <summary>Per-request routing selection (extension).</summary>
public sealed record MoeRoutingRequestDto
{
    /// <summary>vanilla, token_drop, expanded_drop or laser.</summary>
    public string? Policy { get; init; }
    /// <summary>Capacity factor gamma (&gt; 0) for capacity-aware policies.</summary>
    public double? CapacityFactor { get; init; }
}
