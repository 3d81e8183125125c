using System.Text.Json;
using MoeServe.Api.OpenAi;

namespace MoeServe.Api.Endpoints;

/// <summary>
/// Reads a JSON body into a request record, turning every way it can be wrong into an OpenAI error:
/// not JSON or wrong types (400 naming the field), too large (413).
/// </summary>
public static class RequestBody
{
    public static async Task<T> ReadAsync<T>(HttpRequest request, JsonSerializerOptions options) where T : class
    {
        try
        {
            var value = await JsonSerializer.DeserializeAsync<T>(request.Body, options, request.HttpContext.RequestAborted);
            return value ?? throw OpenAiException.Invalid("The request body must be a JSON object.");
        }
        catch (JsonException e)
        {
            string? param = e.Path is { Length: > 2 } path ? path.TrimStart('$', '.') : null;
            string message = param is null
                ? "We could not parse the JSON body of your request. The body must be valid JSON."
                : $"Invalid type or value for '{param}'.";
            throw OpenAiException.Invalid(message, param);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new OpenAiException(StatusCodes.Status413PayloadTooLarge, "The request body is too large.", "invalid_request_error", null, "request_too_large");
        }
    }
}
