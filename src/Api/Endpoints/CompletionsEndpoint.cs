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

/// <summary>POST /v1/completions: legacy text completions with echo and legacy logprobs.</summary>
public static class CompletionsEndpoint
{
    private const int DefaultMaxTokens = 16; // OpenAI's default for this endpoint

    public static async Task<IResult> HandleAsync(HttpContext http, ModelState state, IOptions<RoutingOptions> routingOptions,
        MoeServeMetrics metrics, IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> jsonOptions)
    {
        var json = jsonOptions.Value.SerializerOptions;
        long began = Stopwatch.GetTimestamp();
        var request = await RequestBody.ReadAsync<CompletionRequest>(http.Request, json);
        var model = state.Require(request.Model);
        var routing = RoutingSelection.Resolve(http.Request.Headers, request.MoeRouting, routingOptions.Value);
        if (request.Logprobs is int lp && (lp < 0 || lp > GenerationSettings.MaxTopLogprobs))
            throw OpenAiException.Invalid($"logprobs must be between 0 and {GenerationSettings.MaxTopLogprobs}, got {lp}", "logprobs");
        var settings = GenerationSettings.Validate(request.Temperature, request.TopP, request.TopK, request.Seed, request.Stop, request.N,
            request.PresencePenalty, request.FrequencyPenalty, request.Logprobs ?? 0, request.Stream, request.StreamOptions);
        bool echo = request.Echo == true, logprobs = request.Logprobs is not null;

        var prompts = PromptParser.Parse(request.Prompt, model.Tokenizer, model.Engine.Model.Config.VocabSize);
        var requests = new List<GenerationRequest>();
        foreach (var prompt in prompts)
        {
            int maxTokens = GenerationSettings.ResolveMaxTokens(request.MaxTokens ?? DefaultMaxTokens, "max_tokens", prompt.Length, model.MaxContextTokens);
            for (int i = 0; i < settings.N; i++)
                requests.Add(new GenerationRequest
                {
                    PromptIds = prompt, Sampling = settings.ForChoice(i), MaxTokens = maxTokens, StopStrings = settings.Stop,
                    PromptLogprobs = echo && logprobs, Policy = routing.Policy, CapacityFactor = routing.CapacityFactor ?? 1.0, IgnoreEos = request.IgnoreEos == true,
                });
        }
        var run = GenerationRun.Start(model.Engine, requests, http.RequestAborted);
        Responses.AddRoutingHeaders(http.Response, routing);
        var ids = new ResponseIds("cmpl", model.Id);
        int promptTokens = prompts.Sum(p => p.Length);
        string PromptText(int choice) => model.Tokenizer.Decode(requests[choice].PromptIds);

        if (settings.Stream)
        {
            var sse = new ServerSentEvents(http.Response, json);
            await sse.StartAsync();
            var ct = http.RequestAborted;
            var offsets = new int[requests.Count];
            int completion = 0;
            var dropped = new long[requests.Count];
            var rerouted = new long[requests.Count];
            await foreach (var (choice, e) in run.ReadAllAsync(ct))
            {
                if (e.FinishReason == "error") throw new InvalidOperationException("generation failed");
                if (e.Token is not null) completion++;
                dropped[choice] = Math.Max(dropped[choice], e.DroppedPairs);
                rerouted[choice] = Math.Max(rerouted[choice], e.ReroutedPairs);
                bool first = e.Token is not null && e.CompletionTokens == 1;
                string text = (first && echo ? PromptText(choice) : "") + e.TextDelta;
                CompletionLogprobsDto? lpDto = null;
                if (logprobs && e.Token is not null)
                {
                    int start = first && echo ? 0 : offsets[choice];
                    lpDto = LogprobFormatting.Legacy(model.Tokenizer, first && echo ? e.PromptLogprobs : null, [e.Token], start);
                }
                offsets[choice] += text.Length;
                if (text.Length > 0 || lpDto is not null || e.FinishReason is not null && e.FinishReason != "cancelled")
                    await sse.WriteAsync(new CompletionResponse(ids.Id, "text_completion", ids.Created, model.Id,
                        [new CompletionChoiceDto(choice, text, lpDto, e.FinishReason == "cancelled" ? null : e.FinishReason)], null), ct);
            }
            if (settings.IncludeUsage)
                await sse.WriteAsync(new CompletionResponse(ids.Id, "text_completion", ids.Created, model.Id, [],
                    new UsageDto(promptTokens, completion, promptTokens + completion), Responses.Routing(routing, dropped.Sum(), rerouted.Sum())), ct);
            await sse.DoneAsync(ct);
            metrics.ObserveRequest(routing.Policy.ToWireName(), Stopwatch.GetElapsedTime(began).TotalSeconds);
            return Results.Empty;
        }

        var choices = requests.Select(_ => new ChoiceAccumulator()).ToArray();
        await foreach (var (choice, e) in run.ReadAllAsync(http.RequestAborted)) choices[choice].Add(e);
        Responses.ThrowIfFailed(choices.Select(c => c.FinishReason));
        var dtos = choices.Select((c, i) =>
        {
            string prefix = echo ? PromptText(i) : "";
            var lpDto = logprobs ? LogprobFormatting.Legacy(model.Tokenizer, echo ? c.PromptLogprobs : null, c.Tokens, 0) : null;
            return new CompletionChoiceDto(i, prefix + c.Text, lpDto, c.FinishReason);
        }).ToList();
        int generated = choices.Sum(c => c.Tokens.Count);
        metrics.ObserveRequest(routing.Policy.ToWireName(), Stopwatch.GetElapsedTime(began).TotalSeconds);
        return TypedResults.Json(new CompletionResponse(ids.Id, "text_completion", ids.Created, model.Id, dtos,
            new UsageDto(promptTokens, generated, promptTokens + generated),
            Responses.Routing(routing, choices.Sum(c => c.DroppedPairs), choices.Sum(c => c.ReroutedPairs))), json);
    }
}
