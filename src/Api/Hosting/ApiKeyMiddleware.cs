using Microsoft.Extensions.Options;
using MoeServe.Api.OpenAi;

namespace MoeServe.Api.Hosting;

/// <summary>When Server:ApiKeys is set, /v1 requests need "Authorization: Bearer KEY" (401 otherwise).</summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, IOptions<ServerOptions> options)
{
    private readonly HashSet<string> _keys = options.Value.ApiKeys.Where(k => k.Length > 0).ToHashSet(StringComparer.Ordinal);

    public Task InvokeAsync(HttpContext http)
    {
        if (_keys.Count == 0 || !http.Request.Path.StartsWithSegments("/v1")) return next(http);
        string header = http.Request.Headers.Authorization.ToString();
        string? key = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
        if (key is not null && _keys.Contains(key)) return next(http);
        throw new OpenAiException(StatusCodes.Status401Unauthorized,
            key is null ? "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'." : "Incorrect API key provided.",
            "invalid_request_error", null, "invalid_api_key");
    }
}
