using MoeServe.Inference.Sampling;

namespace MoeServe.Inference.Engine;

/// <summary>Logprob of one prompt token given the tokens before it (the first prompt token has none).</summary>
public sealed record PromptTokenLogprob(int TokenId, float? Logprob, IReadOnlyList<TokenLogprob> TopLogprobs);

/// <summary>
/// What the engine reports for a sequence after a step: a new token (with the text it completed, which
/// may be empty while a UTF-8 character or a possible stop string is pending), and at the end a finish reason.
/// </summary>
public sealed record SequenceEvent
{
    public SampledToken? Token { get; init; }
    public string TextDelta { get; init; } = "";
    /// <summary>"stop", "length", or "cancelled"; null while generating.</summary>
    public string? FinishReason { get; init; }
    /// <summary>Set once, on the first event, when prompt logprobs were requested.</summary>
    public IReadOnlyList<PromptTokenLogprob>? PromptLogprobs { get; init; }
    public int PromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    /// <summary>Token-expert pairs of the sequence dropped so far (all layers).</summary>
    public long DroppedPairs { get; init; }
    /// <summary>Token-expert pairs of the sequence rerouted so far (all layers).</summary>
    public long ReroutedPairs { get; init; }
}
