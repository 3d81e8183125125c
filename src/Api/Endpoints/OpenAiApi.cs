using MoeServe.Api.Hosting;
using MoeServe.Api.Metrics;
using MoeServe.Api.OpenAi;

namespace MoeServe.Api.Endpoints;

/// <summary>Maps the OpenAI-compatible routes and the health probe.</summary>
public static class OpenAiApi
{
    public static IEndpointRouteBuilder MapOpenAiApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").WithTags("OpenAI");

        v1.MapPost("/chat/completions", ChatCompletionsEndpoint.HandleAsync)
            .WithName("CreateChatCompletion")
            .WithSummary("Creates a chat completion (JSON, or server-sent events with stream = true).")
            .WithDescription("OpenAI-compatible. Routing: header X-Routing-Policy (vanilla | token_drop | expanded_drop | laser) and " +
                             "X-Capacity-Factor, or the body extension moe_routing; the applied routing is echoed in the response " +
                             "headers and in the body's moe_routing object.")
            .Accepts<ChatCompletionRequest>("application/json")
            .Produces<ChatCompletionResponse>(StatusCodes.Status200OK, "application/json", "text/event-stream")
            .WithMetadata(new StreamedAs(typeof(ChatCompletionChunk)))
            .WithRoutingHeaders()
            .ProducesOpenAiErrors();

        v1.MapPost("/completions", CompletionsEndpoint.HandleAsync)
            .WithName("CreateCompletion")
            .WithSummary("Creates a legacy text completion; prompt may be text or token ids; echo and legacy logprobs.")
            .Accepts<CompletionRequest>("application/json")
            .Produces<CompletionResponse>(StatusCodes.Status200OK, "application/json", "text/event-stream")
            .WithMetadata(new StreamedAs(typeof(CompletionResponse)))
            .WithRoutingHeaders()
            .ProducesOpenAiErrors();

        v1.MapGet("/models", ListModels)
            .WithName("ListModels")
            .WithSummary("Lists the served model.")
            .Produces<ModelListDto>()
            .ProducesOpenAiErrors();

        app.MapGet("/v1/moe/load", ExpertLoad)
            .WithTags("MoE")
            .WithName("ExpertLoad")
            .WithSummary("The recent layer x expert load matrix (token-expert pairs executed), in total and per routing policy, with each layer's max/mean imbalance, and the expert-parallel placement with each device's pairs and the straggler ratio per layer.")
            .Produces<ExpertLoadDto>();

        app.MapMethods("/health", [HttpMethods.Get, HttpMethods.Head], Health)
            .WithTags("Operations")
            .WithName("Health")
            .WithSummary("200 when the model is loaded and serving, 503 while it loads.")
            .Produces<HealthDto>(StatusCodes.Status200OK)
            .Produces<HealthDto>(StatusCodes.Status503ServiceUnavailable);
        return app;
    }

    private static IResult ExpertLoad(LoadWindow window, ModelState state)
    {
        var (steps, total, byPolicy) = window.Snapshot();
        var plan = state.Model?.Engine.Model.ExpertParallel;
        var parallel = plan is null ? null : new ExpertParallelLoadDto(plan.Names, plan.Placement.Mode, plan.Placement.DeviceOf, plan.Placement.Replicas,
            window.DeviceSnapshot(), Enumerable.Range(0, total.Length).Select(window.StragglerRatio).ToArray());
        return TypedResults.Ok(new ExpertLoadDto(steps, window.Capacity, total, byPolicy, total.Select(LoadWindow.Imbalance).ToArray(), parallel));
    }

    private static IResult ListModels(ModelState state)
    {
        var model = state.Require();
        return TypedResults.Ok(new ModelListDto("list", [new ModelDto(model.Id, "model", model.CreatedUnix, "moeserve")]));
    }

    private static IResult Health(ModelState state) => state.Model is { } model
        ? TypedResults.Ok(new HealthDto("ok", model.Id))
        : TypedResults.Json(new HealthDto(state.LoadError is null ? "loading" : "failed", null, state.LoadError), statusCode: StatusCodes.Status503ServiceUnavailable);

    private static RouteHandlerBuilder ProducesOpenAiErrors(this RouteHandlerBuilder builder)
    {
        foreach (int status in new[] { 400, 401, 404, 413, 429, 503 })
            builder.Produces<OpenAiErrorResponse>(status, "application/json");
        return builder;
    }

    private static RouteHandlerBuilder WithRoutingHeaders(this RouteHandlerBuilder builder) =>
        builder.WithMetadata(new RoutingHeadersMetadata());
}

/// <summary>Marks an operation that accepts and returns the X-Routing-* headers (documented by the OpenAPI filter).</summary>
public sealed class RoutingHeadersMetadata;

/// <summary>The type of each server-sent event when the operation streams (documented by the OpenAPI filter).</summary>
public sealed record StreamedAs(Type ChunkType);
