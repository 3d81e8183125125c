using Microsoft.AspNetCore.Http.HttpResults;

namespace MoeServe.Api.OpenAi;

/// <summary>The OpenAI error body: {"error": {"message", "type", "param", "code"}}.</summary>
public sealed record OpenAiErrorBody(string Message, string Type, string? Param, string? Code);

public sealed record OpenAiErrorResponse(OpenAiErrorBody Error);

/// <summary>A request that must be answered with an OpenAI error. Thrown by validation, caught by the endpoint.</summary>
public sealed class OpenAiException(int status, string message, string type, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;
    public OpenAiErrorResponse Body { get; } = new(new OpenAiErrorBody(message, type, param, code));

    public static OpenAiException Invalid(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    public static OpenAiException ModelNotFound(string model) =>
        new(StatusCodes.Status404NotFound, $"The model '{model}' does not exist or you do not have access to it.", "invalid_request_error", "model", "model_not_found");

    public static OpenAiException NotReady(string? detail = null) =>
        new(StatusCodes.Status503ServiceUnavailable, detail ?? "The model is still loading; retry shortly.", "service_unavailable", null, "model_not_ready");

    public static OpenAiException Overloaded(string message) =>
        new(StatusCodes.Status429TooManyRequests, message, "rate_limit_exceeded", null, "rate_limit_exceeded");

    public JsonHttpResult<OpenAiErrorResponse> ToResult() => TypedResults.Json(Body, statusCode: Status);
}
