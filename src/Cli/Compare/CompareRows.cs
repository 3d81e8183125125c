using MoeServe.Cli.Eval;

namespace MoeServe.Cli.Compare;

/// <summary>Turns one configuration's <see cref="EvalResult"/> into its <see cref="CompareRow"/>.</summary>
public static class CompareRows
{
    /// <param name="vanilla">The reference run on the same inputs (top-1 agreement).</param>
    public static CompareRow From(CompareConfiguration configuration, EvalResult result, EvalResult vanilla)
    {
        var mixed = result.ExpertLoad.Groups.Single(g => g.Name == Evaluator.MixedGroup);
        var (matches, positions) = TopOneAgreement.Count(result.MixedBatchArgmax, vanilla.MixedBatchArgmax);
        return new CompareRow
        {
            Name = configuration.Name,
            Policy = result.Policy,
            CapacityFactor = configuration.CapacityFactor,
            Settings = configuration.Settings,
            ImbalanceAgg = mixed.ImbalanceAgg,
            MaxImbalance = mixed.MaxImbalance,
            DeviceImbalance = mixed.Devices,
            DroppedShare = mixed.DroppedShare,
            ReroutedShare = mixed.ReroutedShare,
            Perplexity = result.OverallPerplexity.MixedBatchPerplexity,
            SingleBatchPerplexity = result.OverallPerplexity.Perplexity,
            DomainPerplexity = result.Perplexity.Select(p => new NamedValue(p.Domain, p.MixedBatchPerplexity)).ToList(),
            TaskAccuracy = result.Tasks.Count == 0 ? double.NaN : result.Tasks.Average(t => t.Accuracy),
            FamilyAccuracy = result.Tasks.Select(t => new NamedValue(t.Family, t.Accuracy)).ToList(),
            Top1Agreement = positions == 0 ? double.NaN : (double)matches / positions,
            AgreementPositions = positions,
        };
    }
}
