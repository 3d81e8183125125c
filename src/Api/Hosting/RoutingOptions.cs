using System.ComponentModel.DataAnnotations;
using MoeServe.Routing;

namespace MoeServe.Api.Hosting;

/// <summary>The global routing default (configuration section "Routing"); requests may override it.</summary>
public sealed class RoutingOptions : IValidatableObject
{
    public const string Section = "Routing";

    /// <summary>vanilla, token_drop, expanded_drop or laser.</summary>
    public string Policy { get; set; } = "vanilla";

    /// <summary>Capacity factor gamma of capacity-aware policies: C = max(1, ceil(gamma * k * T / E)).</summary>
    [Range(1e-6, 1e6)] public double CapacityFactor { get; set; } = 1.0;

    /// <summary>Which overflow tokens token_drop keeps: score, random, first or last.</summary>
    public string Strategy { get; set; } = "score";

    /// <summary>Enforce capacity on decode-only steps too (off: decoding is not degraded).</summary>
    public bool ApplyToDecode { get; set; }

    public RoutingPolicy ParsedPolicy => RoutingPolicyNames.TryParse(Policy, out var p) ? p : RoutingPolicy.Vanilla;

    public IEnumerable<ValidationResult> Validate(ValidationContext context)
    {
        if (!RoutingPolicyNames.TryParse(Policy, out var policy))
            yield return new ValidationResult($"must be one of {string.Join(", ", RoutingPolicyNames.All)}", [nameof(Policy)]);
        else if (!RoutingSelection.IsImplemented(policy))
            yield return new ValidationResult($"'{Policy}' is not implemented yet (implemented: {string.Join(", ", RoutingSelection.Implemented.Select(p => p.ToWireName()))})", [nameof(Policy)]);
        if (Strategy is not ("score" or "random" or "first" or "last"))
            yield return new ValidationResult("must be score, random, first or last", [nameof(Strategy)]);
    }
}
