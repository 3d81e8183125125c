using System.Text.Json.Serialization;

namespace MoeServe.Api.OpenAi;

/// <summary>Token usage of a request.</summary>
public sealed record UsageDto(int PromptTokens, int CompletionTokens, int TotalTokens);

/// <summary>What routing was applied (extension, present on every completion response).</summary>
/// <param name="Policy">The policy that routed this request's tokens.</param>
/// <param name="CapacityFactor">The capacity factor used, or null when the policy enforces no capacity.</param>
/// <param name="DroppedPairs">Token-expert pairs of this request dropped by capacity.</param>
/// <param name="ReroutedPairs">Token-expert pairs of this request moved to another expert.</param>
public sealed record MoeRoutingDto(string Policy, double? CapacityFactor, long DroppedPairs, long ReroutedPairs);

/// <summary>One alternative token and its logprob (chat format).</summary>
public sealed record TopLogprobDto(string Token, float Logprob, int[] Bytes);

/// <summary>A generated token with its logprob and alternatives (chat format).</summary>
public sealed record TokenLogprobDto(string Token, float Logprob, int[] Bytes, List<TopLogprobDto> TopLogprobs);

public sealed record ChatLogprobsDto(List<TokenLogprobDto> Content);

public sealed record ChatMessageResponseDto(string Role, string Content);

public sealed record ChatChoiceDto(int Index, ChatMessageResponseDto Message, ChatLogprobsDto? Logprobs, string? FinishReason);

/// <summary>A chat.completion object.</summary>
public sealed record ChatCompletionResponse(string Id, string Object, long Created, string Model,
    List<ChatChoiceDto> Choices, UsageDto Usage, MoeRoutingDto MoeRouting, string? SystemFingerprint = null);

/// <summary>A streamed delta: role on the first chunk, content after it, and {} on the final chunk, as OpenAI sends them.</summary>
public sealed record ChatDeltaDto(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content);

public sealed record ChatChunkChoiceDto(int Index, ChatDeltaDto Delta, ChatLogprobsDto? Logprobs, string? FinishReason);

/// <summary>A chat.completion.chunk object (one server-sent event).</summary>
public sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model,
    List<ChatChunkChoiceDto> Choices, UsageDto? Usage,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] MoeRoutingDto? MoeRouting = null);

/// <summary>Legacy completions logprobs: parallel lists per token.</summary>
public sealed record CompletionLogprobsDto(List<string> Tokens, List<float?> TokenLogprobs,
    List<Dictionary<string, float>?> TopLogprobs, List<int> TextOffset);

public sealed record CompletionChoiceDto(int Index, string Text, CompletionLogprobsDto? Logprobs, string? FinishReason);

/// <summary>A text_completion object (also each streamed chunk).</summary>
public sealed record CompletionResponse(string Id, string Object, long Created, string Model,
    List<CompletionChoiceDto> Choices, UsageDto? Usage,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] MoeRoutingDto? MoeRouting = null);

public sealed record ModelDto(string Id, string Object, long Created, string OwnedBy);

public sealed record ModelListDto(string Object, List<ModelDto> Data);

/// <summary>GET /health answer.</summary>
public sealed record HealthDto(string Status, string? Model, string? Error = null);

/// <summary>GET /v1/moe/load: loads summed over the last <paramref name="Steps"/> engine steps (at most <paramref name="Window"/>).</summary>
/// <param name="Total">[layer][expert] token-expert pairs executed.</param>
/// <param name="ByPolicy">Per routing policy, [layer][expert] pairs executed for tokens of that policy.</param>
/// <param name="Imbalance">[layer] max/mean of the layer's loads.</param>
public sealed record ExpertLoadDto(int Steps, int Window, long[][] Total, Dictionary<string, long[][]> ByPolicy, double[] Imbalance,
    ExpertParallelLoadDto? ExpertParallel);

/// <summary>Where the experts live and what each device executed over the window.</summary>
/// <param name="Devices">Device names (cuda:N, or cpu:N for virtual ranks).</param>
/// <param name="Placement">Mode of the placement: contiguous, explicit or load_aware.</param>
/// <param name="DeviceOf">[layer][expert] index into <paramref name="Devices"/> of the expert's primary replica.</param>
/// <param name="Replicas">[layer][expert] every device holding a replica (more than one with redundant experts).</param>
/// <param name="DeviceTotal">[layer][device] token-expert pairs executed.</param>
/// <param name="StragglerRatio">[layer] busiest device's pairs over the mean device's, over the window.</param>
public sealed record ExpertParallelLoadDto(string[] Devices, string Placement, int[][] DeviceOf, int[][][] Replicas, long[][] DeviceTotal, double[] StragglerRatio);
