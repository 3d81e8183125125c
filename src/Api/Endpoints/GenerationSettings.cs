using System.Text.Json;
using MoeServe.Api.OpenAi;
using MoeServe.Inference.Sampling;

namespace MoeServe.Api.Endpoints;

/// <summary>The sampling-related fields shared by chat and legacy completions, validated as OpenAI does.</summary>
public sealed record GenerationSettings(SamplingParameters Sampling, int N, IReadOnlyList<string> Stop, bool Stream, bool IncludeUsage)
{
    public const int MaxChoices = 16;
    public const int MaxTopLogprobs = 20;

    public static GenerationSettings Validate(double? temperature, double? topP, int? topK, long? seed, JsonElement? stop, int? n,
        double? presence, double? frequency, int topLogprobs, bool? stream, StreamOptionsDto? streamOptions)
    {
        Range(temperature, 0, 2, "temperature");
        if (topP is double p && (!(p > 0) || p > 1)) throw OpenAiException.Invalid($"top_p must be greater than 0 and at most 1, got {p}", "top_p");
        if (topK is int k && k < -1) throw OpenAiException.Invalid($"top_k must be -1 (disabled) or greater, got {k}", "top_k");
        if (n is int choices && (choices < 1 || choices > MaxChoices)) throw OpenAiException.Invalid($"n must be between 1 and {MaxChoices}, got {choices}", "n");
        Range(presence, -2, 2, "presence_penalty");
        Range(frequency, -2, 2, "frequency_penalty");
        if (streamOptions is not null && stream != true) throw OpenAiException.Invalid("stream_options is only allowed when stream is true", "stream_options");
        var sampling = new SamplingParameters
        {
            Temperature = temperature ?? 1.0,
            TopP = topP ?? 1.0,
            TopK = topK is int tk && tk > 0 ? tk : 0,
            Seed = seed,
            PresencePenalty = presence ?? 0,
            FrequencyPenalty = frequency ?? 0,
            TopLogprobs = topLogprobs,
        };
        return new GenerationSettings(sampling, n ?? 1, ParseStop(stop), stream == true, streamOptions?.IncludeUsage == true);
    }

    private static void Range(double? value, double min, double max, string param)
    {
        if (value is double v && (!double.IsFinite(v) || v < min || v > max))
            throw OpenAiException.Invalid($"{param} must be between {min} and {max}, got {v}", param);
    }

    /// <summary>stop: null, a string, or a list of up to 4 non-empty strings.</summary>
    private static IReadOnlyList<string> ParseStop(JsonElement? stop)
    {
        if (stop is not JsonElement e || e.ValueKind == JsonValueKind.Null) return [];
        List<string> stops = e.ValueKind switch
        {
            JsonValueKind.String => [JsonStrings.Text(e, "stop")],
            JsonValueKind.Array when e.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String) => e.EnumerateArray().Select(x => JsonStrings.Text(x, "stop")).ToList(),
            _ => throw OpenAiException.Invalid("stop must be a string or a list of strings", "stop"),
        };
        if (stops.Count > 4) throw OpenAiException.Invalid("stop may contain at most 4 sequences", "stop");
        if (stops.Any(string.IsNullOrEmpty)) throw OpenAiException.Invalid("stop sequences must not be empty", "stop");
        return stops;
    }

    /// <summary>Checks the requested completion length against the context; null means "as much as fits".</summary>
    public static int ResolveMaxTokens(int? requested, string param, int promptTokens, int context)
    {
        if (requested is int r && r < 1) throw OpenAiException.Invalid($"{param} must be at least 1, got {r}", param);
        if (promptTokens >= context || (requested is int m && promptTokens + (long)m > context))
        {
            string asked = requested is int want ? $"{promptTokens + (long)want} tokens ({promptTokens} in the prompt, {want} for the completion)" : $"{promptTokens} tokens in the prompt";
            throw OpenAiException.Invalid(
                $"This model's maximum context length is {context} tokens. However, you requested {asked}. Please reduce the length of the prompt or the completion.",
                requested is null ? "messages" : param, "context_length_exceeded");
        }
        return requested ?? context - promptTokens;
    }

    /// <summary>Sampling for choice <paramref name="index"/>: a seeded request gives each choice its own stream.</summary>
    public SamplingParameters ForChoice(int index) =>
        Sampling.Seed is long seed ? Sampling with { Seed = seed + index } : Sampling;
}
