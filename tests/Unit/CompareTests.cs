using MoeServe.Cli.Compare;
using MoeServe.Cli.Eval;
using MoeServe.Routing;

namespace MoeServe.Unit.Tests;

/// <summary>The comparison's arithmetic and table on hand-made numbers (`moeserve-cli compare`); no model.</summary>
public class CompareTests
{
    private static CompareRow Row(string name, double iAgg, double ppl, double taskAccuracy = 0.5, double agreement = 1.0) => new()
    {
        Name = name,
        Policy = name,
        CapacityFactor = 1.0,
        Settings = "",
        ImbalanceAgg = iAgg,
        MaxImbalance = iAgg + 0.5,
        DeviceImbalance = [new DeviceImbalance(2, 1.1, 1.2), new DeviceImbalance(4, 1.3, 1.4)], // no 8-device entry
        DroppedShare = 0.1234,
        ReroutedShare = 0,
        Perplexity = ppl,
        SingleBatchPerplexity = ppl,
        DomainPerplexity = [new NamedValue("a", ppl)],
        TaskAccuracy = taskAccuracy,
        FamilyAccuracy = [],
        Top1Agreement = agreement,
        AgreementPositions = 10,
        Timing = new RoutingTiming(12.34, 567.89),
    };

    [Fact]
    public void Ratios_are_vanilla_over_policy_imbalance_and_relative_perplexity_change()
    {
        var vanilla = Row("vanilla", iAgg: 1.5, ppl: 100);
        var rows = CompareRatios.Apply([vanilla, Row("drop", iAgg: 1.2, ppl: 105), Row("better", iAgg: 3.0, ppl: 90)], vanilla);
        Assert.Equal(1.0, rows[0].ImbalanceRatio, 12);
        Assert.Equal(0.0, rows[0].PerplexityChangePercent, 12);
        Assert.Equal(1.25, rows[1].ImbalanceRatio, 12);        // 1.5 / 1.2: better balanced
        Assert.Equal(5.0, rows[1].PerplexityChangePercent, 9);  // 105 / 100 - 1
        Assert.Equal(0.5, rows[2].ImbalanceRatio, 12);
        Assert.Equal(-10.0, rows[2].PerplexityChangePercent, 9);
        Assert.Equal(0.2, rows[1].MaxVioAgg, 12);
        Assert.True(double.IsNaN(CompareRatios.ImbalanceRatio(1.5, 0)));
    }

    [Fact]
    public void Main_table_prints_one_row_per_configuration_with_percentages_and_na()
    {
        var vanilla = Row("vanilla", iAgg: 1.5, ppl: 100);
        var rows = CompareRatios.Apply([vanilla, Row("token_drop 1.0", iAgg: 1.2, ppl: 105, taskAccuracy: double.NaN, agreement: 0.925)], vanilla);
        var lines = CompareTable.MainTable(rows, [2, 4, 8]).TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal(4, lines.Length); // header, alignment, two rows
        int columns = lines[0].Count(c => c == '|');
        Assert.All(lines, l => Assert.Equal(columns, l.Count(c => c == '|')));
        Assert.Equal("| token_drop 1.0 | 1.200 | 1.700 | 0.200 | 1.100 | 1.300 | n/a | 12.34 | 0.00 | 105.00 | n/a | 92.50 | 1.250 | +5.00 | 12.3 | 567.9 |", lines[3]);
        Assert.StartsWith("| vanilla | 1.500 |", lines[2]);
        Assert.Contains("| 50.0 | 100.00 | 1.000 | 0.00 |", lines[2]);
    }

    [Fact]
    public void Top1_agreement_counts_equal_argmax_positions_over_all_documents()
    {
        int[][][] reference = [[[1, 2, 3], [4]], [[5, 6]]];
        int[][][] policy = [[[1, 9, 3], [4]], [[0, 6]]];
        Assert.Equal((4L, 6L), TopOneAgreement.Count(policy, reference));
        Assert.Equal((6L, 6L), TopOneAgreement.Count(reference, reference));
        Assert.Throws<InvalidOperationException>(() => TopOneAgreement.Count([[[1, 2]]], [[[1, 2, 3]]])); // not the same inputs
    }

    [Fact]
    public void Configurations_start_with_vanilla_and_pin_the_knobs()
    {
        var list = CompareConfigurations.For(topK: 2);
        Assert.Equal(["vanilla", "token_drop 1.0", "token_drop 1.5", "token_drop 2.0", "expanded_drop 1.0", "laser c=3", "laser c=4"], list.Select(c => c.Name));
        Assert.Equal(RoutingPolicy.Vanilla, list[0].Policy);
        Assert.Equal([1.0, 1.5, 2.0], list.Where(c => c.Policy == RoutingPolicy.TokenDrop).Select(c => c.CapacityFactor));
        var expanded = list.Single(c => c.Policy == RoutingPolicy.ExpandedDrop).Routing;
        Assert.Equal((LocalScope.All, (int?)2), (expanded.Scope, expanded.ExtraCandidates));
        Assert.Equal([new LaserParameters(3, 0.9), new LaserParameters(4, 0.9)], list.Where(c => c.Policy == RoutingPolicy.Laser).Select(c => c.Routing.Laser));
    }
}
