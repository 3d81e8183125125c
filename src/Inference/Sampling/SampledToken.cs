namespace MoeServe.Inference.Sampling;

/// <summary>A token and its log-probability under the model (before penalties and temperature).</summary>
public readonly record struct TokenLogprob(int TokenId, float Logprob);

/// <summary>The chosen token, its logprob, and the most likely alternatives when requested.</summary>
public sealed record SampledToken(int TokenId, float Logprob, IReadOnlyList<TokenLogprob> TopLogprobs);
