using MoeServe.Cli.Eval;

namespace MoeServe.Cli.Compare;

/// <summary>A per-domain or per-family number.</summary>
public sealed record NamedValue(string Name, double Value);

/// <summary>Median wall time of one <c>LayerRouter.Route</c> call (one layer, one step), microseconds.</summary>
/// <param name="DecodeMicros">T = 16 decode-only step (capacity off there unless apply_to_decode, as in the server).</param>
/// <param name="PrefillMicros">T = 512 prefill step.</param>
public sealed record RoutingTiming(double DecodeMicros, double PrefillMicros);

/// <summary>
/// Everything the comparison reports about one configuration, plain numbers so the table, the plot and
/// the JSON read the same values (and a test can build one by hand). Balance and quality come from the
/// same forward passes, the mixed-domain batches, where batch-mates of different domains compete for
/// capacity as in serving. Shares are fractions (0..1); the table prints them as percentages.
/// </summary>
public sealed record CompareRow
{
    public required string Name { get; init; }
    public required string Policy { get; init; }
    public required double CapacityFactor { get; init; }
    public required string Settings { get; init; }

    /// <summary>I_agg: mean over layers and mixed-batch steps of max_e n_e / mean_e n_e.</summary>
    public required double ImbalanceAgg { get; init; }
    /// <summary>Largest I of any layer and mixed-batch step.</summary>
    public required double MaxImbalance { get; init; }
    public double MaxVioAgg => ImbalanceAgg - 1;
    /// <summary>I_dev per device count (contiguous placement), mean and max over layers and steps.</summary>
    public required IReadOnlyList<DeviceImbalance> DeviceImbalance { get; init; }
    /// <summary>Dropped token-expert pairs / pairs vanilla routes (T k per layer).</summary>
    public required double DroppedShare { get; init; }
    /// <summary>Pairs placed on an expert outside the token's vanilla top-k / pairs vanilla routes.</summary>
    public required double ReroutedShare { get; init; }

    /// <summary>Held-out perplexity of the mixed batches, all domains' tokens pooled.</summary>
    public required double Perplexity { get; init; }
    /// <summary>The same tokens scored in single-domain batches (the eval command's headline number).</summary>
    public required double SingleBatchPerplexity { get; init; }
    public required IReadOnlyList<NamedValue> DomainPerplexity { get; init; }
    /// <summary>Exact-match accuracy, unweighted mean over task families (NaN without tasks).</summary>
    public required double TaskAccuracy { get; init; }
    public required IReadOnlyList<NamedValue> FamilyAccuracy { get; init; }
    /// <summary>Share of held-out positions whose argmax next token equals vanilla's on the same mixed batches.</summary>
    public required double Top1Agreement { get; init; }
    public required long AgreementPositions { get; init; }

    /// <summary>vanilla I_agg / this I_agg: above 1 means better balanced than vanilla. Set by <see cref="CompareRatios"/>.</summary>
    public double ImbalanceRatio { get; init; } = double.NaN;
    /// <summary>100 (ppl / vanilla ppl - 1): positive means worse than vanilla. Set by <see cref="CompareRatios"/>.</summary>
    public double PerplexityChangePercent { get; init; } = double.NaN;

    public RoutingTiming? Timing { get; init; }
}
