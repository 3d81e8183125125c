using MoeServe.Api.OpenAi;

namespace MoeServe.Api.Hosting;

/// <summary>
/// Turns every failure into an OpenAI error object: OpenAiException with its status, malformed HTTP with
/// 400/413, anything else with a 500 that carries no internals. A client that went away gets nothing.
/// </summary>
public sealed class ErrorHandlingMiddleware(RequestDelegate next, ILogger<ErrorHandlingMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext http)
    {
        try
        {
            await next(http);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client disconnected; its sequences were cancelled through RequestAborted.
        }
        catch (Exception e)
        {
            var error = e switch
            {
                OpenAiException o => o,
                BadHttpRequestException b when b.StatusCode == StatusCodes.Status413PayloadTooLarge =>
                    new OpenAiException(413, "The request body is too large.", "invalid_request_error", null, "request_too_large"),
                BadHttpRequestException b => new OpenAiException(b.StatusCode, b.Message, "invalid_request_error"),
                _ => null,
            };
            if (error is null)
            {
                logger.LogError(e, "Unhandled error on {Path}", http.Request.Path);
                error = new OpenAiException(500, "The server had an error while processing your request.", "server_error");
            }
            if (http.Response.HasStarted)
            {
                // Mid-stream: the status is already sent; report the error as a last event, as OpenAI does.
                await http.Response.WriteAsync("data: " + System.Text.Json.JsonSerializer.Serialize(error.Body, Json.Options) + "\n\n");
                return;
            }
            http.Response.Clear();
            http.Response.StatusCode = error.Status;
            await http.Response.WriteAsJsonAsync(error.Body, Json.Options);
        }
    }
}

/// <summary>The wire format of every JSON body: snake_case names, nulls written (as OpenAI's objects show them).</summary>
public static class Json
{
    public static readonly System.Text.Json.JsonSerializerOptions Options = Configure(new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web));

    public static System.Text.Json.JsonSerializerOptions Configure(System.Text.Json.JsonSerializerOptions options)
    {
        options.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower;
        options.DictionaryKeyPolicy = null; // top_logprobs keys are token texts, kept verbatim
        options.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict;
        options.AllowTrailingCommas = false;
        return options;
    }
}
