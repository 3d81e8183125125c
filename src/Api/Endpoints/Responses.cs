using System.Globalization;
using MoeServe.Api.Hosting;
using MoeServe.Api.OpenAi;
using MoeServe.Routing;

namespace MoeServe.Api.Endpoints;

/// <summary>The id, creation time and model name shared by a response and all its chunks.</summary>
public sealed record ResponseIds(string Prefix, string Model)
{
    public string Id { get; } = $"{Prefix}-{Guid.NewGuid():N}";
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
}

/// <summary>Pieces every completion response carries.</summary>
public static class Responses
{
    /// <summary>The applied routing and the token-expert pairs the request's sequences lost or moved (all layers).</summary>
    public static MoeRoutingDto Routing(AppliedRouting routing, long droppedPairs, long reroutedPairs) =>
        new(routing.Policy.ToWireName(), routing.CapacityFactor, droppedPairs, reroutedPairs);

    public static void AddRoutingHeaders(HttpResponse response, AppliedRouting routing)
    {
        response.Headers[RoutingSelection.PolicyHeader] = routing.Policy.ToWireName();
        response.Headers[RoutingSelection.CapacityHeader] = routing.CapacityFactor is double c ? c.ToString(CultureInfo.InvariantCulture) : "none";
    }

    /// <summary>A sequence that failed inside the engine is a server error, reported without internals.</summary>
    public static void ThrowIfFailed(IEnumerable<string?> finishReasons)
    {
        if (finishReasons.Any(r => r == "error"))
            throw new OpenAiException(StatusCodes.Status500InternalServerError, "The server failed while generating; the request was not completed.", "server_error");
    }
}
