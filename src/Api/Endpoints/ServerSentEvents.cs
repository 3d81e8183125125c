using System.Text.Json;

namespace MoeServe.Api.Endpoints;

/// <summary>Writes server-sent events in the OpenAI streaming format: "data: {json}\n\n", then "data: [DONE]".</summary>
public sealed class ServerSentEvents(HttpResponse response, JsonSerializerOptions json)
{
    public async Task StartAsync()
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no"; // keep reverse proxies from buffering the stream
        await response.StartAsync();
    }

    public async Task WriteAsync<T>(T payload, CancellationToken cancellation)
    {
        await response.WriteAsync("data: " + JsonSerializer.Serialize(payload, json) + "\n\n", cancellation);
        await response.Body.FlushAsync(cancellation);
    }

    public async Task DoneAsync(CancellationToken cancellation)
    {
        await response.WriteAsync("data: [DONE]\n\n", cancellation);
        await response.Body.FlushAsync(cancellation);
    }
}
