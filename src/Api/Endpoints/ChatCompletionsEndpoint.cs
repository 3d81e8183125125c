using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Options;
using MoeServe.Api.Hosting;
using MoeServe.Api.Metrics;
using MoeServe.Api.OpenAi;
using MoeServe.Inference.Engine;
using MoeServe.Inference.Tokenization;
using MoeServe.Routing;

namespace MoeServe.Api.Endpoints;

/// <summary>POST /v1/chat/completions: JSON or server-sent events, n choices, logprobs, routing selection.</summary>
public static class ChatCompletionsEndpoint
{
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant"];

    public static async Task<IResult> HandleAsync(HttpContext http, ModelState state, IOptions<RoutingOptions> routingOptions,
        MoeServeMetrics metrics, IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> jsonOptions)
    {
        var json = jsonOptions.Value.SerializerOptions;
        long began = Stopwatch.GetTimestamp();
        var request = await RequestBody.ReadAsync<ChatCompletionRequest>(http.Request, json);
        var model = state.Require(request.Model);
        var routing = RoutingSelection.Resolve(http.Request.Headers, request.MoeRouting, routingOptions.Value);

        if (request.TopLogprobs is int tl && (tl < 0 || tl > GenerationSettings.MaxTopLogprobs))
            throw OpenAiException.Invalid($"top_logprobs must be between 0 and {GenerationSettings.MaxTopLogprobs}, got {tl}", "top_logprobs");
        if (request.TopLogprobs is > 0 && request.Logprobs != true)
            throw OpenAiException.Invalid("logprobs must be true when top_logprobs is set", "logprobs");
        var settings = GenerationSettings.Validate(request.Temperature, request.TopP, request.TopK, request.Seed, request.Stop, request.N,
            request.PresencePenalty, request.FrequencyPenalty, request.TopLogprobs ?? 0, request.Stream, request.StreamOptions);

        string prompt = RenderPrompt(model.Tokenizer, request.Messages);
        int[] promptIds = model.Tokenizer.Encode(prompt, addBos: false);
        string maxParam = request.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        int maxTokens = GenerationSettings.ResolveMaxTokens(request.MaxCompletionTokens ?? request.MaxTokens, maxParam, promptIds.Length, model.MaxContextTokens);

        var requests = Enumerable.Range(0, settings.N).Select(i => new GenerationRequest
        {
            PromptIds = promptIds, Sampling = settings.ForChoice(i), MaxTokens = maxTokens, StopStrings = settings.Stop, Policy = routing.Policy, CapacityFactor = routing.CapacityFactor ?? 1.0, IgnoreEos = request.IgnoreEos == true,
        }).ToList();
        var run = GenerationRun.Start(model.Engine, requests, http.RequestAborted);
        Responses.AddRoutingHeaders(http.Response, routing);
        var ids = new ResponseIds("chatcmpl", model.Id);

        if (settings.Stream)
        {
            await StreamAsync(http, run, ids, model.Tokenizer, settings, request.Logprobs == true, promptIds.Length, routing, json);
            metrics.ObserveRequest(routing.Policy.ToWireName(), Stopwatch.GetElapsedTime(began).TotalSeconds);
            return Results.Empty;
        }

        var choices = Enumerable.Range(0, settings.N).Select(_ => new ChoiceAccumulator()).ToArray();
        await foreach (var (choice, e) in run.ReadAllAsync(http.RequestAborted)) choices[choice].Add(e);
        Responses.ThrowIfFailed(choices.Select(c => c.FinishReason));
        int completion = choices.Sum(c => c.Tokens.Count);
        var response = new ChatCompletionResponse(ids.Id, "chat.completion", ids.Created, model.Id,
            choices.Select((c, i) => new ChatChoiceDto(i, new ChatMessageResponseDto("assistant", c.Text),
                request.Logprobs == true ? LogprobFormatting.Chat(model.Tokenizer, c.Tokens) : null, c.FinishReason)).ToList(),
            new UsageDto(promptIds.Length, completion, promptIds.Length + completion),
            Responses.Routing(routing, choices.Sum(c => c.DroppedPairs), choices.Sum(c => c.ReroutedPairs)));
        metrics.ObserveRequest(routing.Policy.ToWireName(), Stopwatch.GetElapsedTime(began).TotalSeconds);
        return TypedResults.Json(response, json);
    }

    private static async Task StreamAsync(HttpContext http, GenerationRun run, ResponseIds ids, ModelTokenizer tokenizer,
        GenerationSettings settings, bool logprobs, int promptTokens, AppliedRouting routing, JsonSerializerOptions json)
    {
        var sse = new ServerSentEvents(http.Response, json);
        await sse.StartAsync();
        var ct = http.RequestAborted;
        ChatCompletionChunk Chunk(int index, ChatDeltaDto delta, ChatLogprobsDto? lp, string? finish) =>
            new(ids.Id, "chat.completion.chunk", ids.Created, ids.Model, [new ChatChunkChoiceDto(index, delta, lp, finish)], null);

        // The first delta of every choice carries the role, as OpenAI's does.
        for (int i = 0; i < settings.N; i++) await sse.WriteAsync(Chunk(i, new ChatDeltaDto("assistant", ""), null, null), ct);
        int completion = 0;
        var dropped = new long[settings.N];
        var rerouted = new long[settings.N];
        await foreach (var (choice, e) in run.ReadAllAsync(ct))
        {
            if (e.FinishReason == "error") throw new InvalidOperationException("generation failed");
            if (e.Token is not null) completion++;
            dropped[choice] = Math.Max(dropped[choice], e.DroppedPairs);
            rerouted[choice] = Math.Max(rerouted[choice], e.ReroutedPairs);
            if (e.TextDelta.Length > 0 || (logprobs && e.Token is not null))
                await sse.WriteAsync(Chunk(choice, new ChatDeltaDto(null, e.TextDelta),
                    logprobs && e.Token is not null ? LogprobFormatting.Chat(tokenizer, [e.Token]) : null, null), ct);
            if (e.FinishReason is not null && e.FinishReason != "cancelled")
                await sse.WriteAsync(Chunk(choice, new ChatDeltaDto(null, null), null, e.FinishReason), ct);
        }
        if (settings.IncludeUsage)
            await sse.WriteAsync(new ChatCompletionChunk(ids.Id, "chat.completion.chunk", ids.Created, ids.Model, [],
                new UsageDto(promptTokens, completion, promptTokens + completion), Responses.Routing(routing, dropped.Sum(), rerouted.Sum())), ct);
        await sse.DoneAsync(ct);
    }

    /// <summary>Validates the messages and renders them with the checkpoint's chat template.</summary>
    private static string RenderPrompt(ModelTokenizer tokenizer, List<ChatMessageDto>? messages)
    {
        if (messages is null || messages.Count == 0) throw OpenAiException.Invalid("messages must be a non-empty array", "messages");
        var turns = new List<ChatMessage>(messages.Count);
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i] ?? throw OpenAiException.Invalid($"messages[{i}] must be an object", $"messages[{i}]");
            if (m.Role is null || !Roles.Contains(m.Role))
                throw OpenAiException.Invalid($"Invalid value for 'messages[{i}].role': '{m.Role}'. Supported roles: system, developer, user, assistant.", $"messages[{i}].role");
            turns.Add(new ChatMessage(m.Role == "developer" ? "system" : m.Role, ContentText(m.Content, i)));
        }
        try { return tokenizer.ChatTemplate.Render(turns); }
        catch (ChatTemplateException e) { throw OpenAiException.Invalid(e.Message, "messages"); }
    }

    /// <summary>content is a string or a list of text parts; other part types are not supported by a text model.</summary>
    private static string ContentText(JsonElement? content, int index)
    {
        string param = $"messages[{index}].content";
        if (content is not JsonElement c || c.ValueKind == JsonValueKind.Null) throw OpenAiException.Invalid($"{param} is required", param);
        if (c.ValueKind == JsonValueKind.String) return JsonStrings.Text(c, param);
        if (c.ValueKind != JsonValueKind.Array) throw OpenAiException.Invalid($"{param} must be a string or a list of content parts", param);
        var text = new System.Text.StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String
                || JsonStrings.Text(type, param) != "text" || !part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                throw OpenAiException.Invalid($"{param}: only text content parts ({{\"type\": \"text\", \"text\": ...}}) are supported", param);
            text.Append(JsonStrings.Text(t, param));
        }
        return text.ToString();
    }
}
