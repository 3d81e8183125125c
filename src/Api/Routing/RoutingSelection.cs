using System.Globalization;
using MoeServe.Api.OpenAi;
using MoeServe.Routing;

namespace MoeServe.Api.Hosting;

/// <summary>The routing a request runs under, as reported back to the client.</summary>
public sealed record AppliedRouting(RoutingPolicy Policy, double? CapacityFactor)
{
    public bool EnforcesCapacity => Policy is RoutingPolicy.TokenDrop or RoutingPolicy.ExpandedDrop;
}

/// <summary>
/// Resolves a request's routing from, in order: the body extension "moe_routing", the X-Routing-Policy /
/// X-Capacity-Factor headers, the global "Routing" configuration. Header and body must agree.
/// </summary>
public static class RoutingSelection
{
    public const string PolicyHeader = "X-Routing-Policy";
    public const string CapacityHeader = "X-Capacity-Factor";

    /// <exception cref="OpenAiException">Unknown policy, bad capacity, or header and body disagree (400).</exception>
    public static AppliedRouting Resolve(IHeaderDictionary headers, MoeRoutingRequestDto? body, RoutingOptions defaults)
    {
        RoutingPolicy? headerPolicy = headers.TryGetValue(PolicyHeader, out var hp) ? ParsePolicy(hp.ToString(), PolicyHeader) : null;
        double? headerCapacity = headers.TryGetValue(CapacityHeader, out var hc) ? ParseCapacity(hc.ToString(), CapacityHeader) : null;
        RoutingPolicy? bodyPolicy = body?.Policy is string bpText ? ParsePolicy(bpText, "moe_routing.policy") : null;
        double? bodyCapacity = body?.CapacityFactor is double bc ? CheckCapacity(bc, "moe_routing.capacity_factor") : null;

        if (headerPolicy is not null && bodyPolicy is not null && headerPolicy != bodyPolicy)
            throw OpenAiException.Invalid($"{PolicyHeader} '{headerPolicy.Value.ToWireName()}' and moe_routing.policy '{bodyPolicy.Value.ToWireName()}' disagree", "moe_routing.policy");
        if (headerCapacity is not null && bodyCapacity is not null && headerCapacity != bodyCapacity)
            throw OpenAiException.Invalid($"{CapacityHeader} {headerCapacity} and moe_routing.capacity_factor {bodyCapacity} disagree", "moe_routing.capacity_factor");

        var policy = bodyPolicy ?? headerPolicy ?? defaults.ParsedPolicy;
        var applied = new AppliedRouting(policy, null);
        return applied.EnforcesCapacity ? applied with { CapacityFactor = bodyCapacity ?? headerCapacity ?? defaults.CapacityFactor } : applied;
    }

    private static RoutingPolicy ParsePolicy(string text, string param) =>
        RoutingPolicyNames.TryParse(text, out var policy)
            ? policy
            : throw OpenAiException.Invalid($"unknown routing policy '{text}' in {param}; expected one of {string.Join(", ", RoutingPolicyNames.All)}", param);

    private static double ParseCapacity(string text, string param) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
            ? CheckCapacity(value, param)
            : throw OpenAiException.Invalid($"{param} must be a number, got '{text}'", param);

    private static double CheckCapacity(double value, string param) =>
        double.IsFinite(value) && value > 0 && value <= 1e6
            ? value
            : throw OpenAiException.Invalid($"{param} must be a number greater than 0, got {value.ToString(CultureInfo.InvariantCulture)}", param);
}
