using MoeServe.Cli.Straggler;
using MoeServe.Routing;

namespace MoeServe.Unit.Tests;

/// <summary>`moeserve-cli straggler` on a small random model and a tiny data folder: the table's invariants.</summary>
public class StragglerBenchmarkTests
{
    [Fact]
    public void Rows_obey_capacity_and_count_every_pair()
    {
        string data = Directory.CreateTempSubdirectory("moeserve-straggler-").FullName;
        Directory.CreateDirectory(Path.Combine(data, "heldout"));
        var random = new Random(7);
        string Words(int n) => string.Join(' ', Enumerable.Range(0, n).Select(_ => random.Next(1000).ToString()));
        foreach (var domain in new[] { "alpha", "beta" })
            File.WriteAllLines(Path.Combine(data, "heldout", domain + ".jsonl"),
                Enumerable.Range(0, 20).Select(_ => System.Text.Json.JsonSerializer.Serialize(new { text = $"{domain} {Words(60)}" })));

        var settings = new StragglerSettings
        {
            ModelDir = RepositoryPaths.DefaultModel, DataDir = data, DeviceCounts = [2, 4],
            WindowTokens = 16, BatchWindows = 4, Batches = 2, Repeats = 1,
        };
        var report = new StragglerRunner(settings).Run();
        var config = MoeServe.Inference.Checkpoint.ModelConfig.Load(RepositoryPaths.DefaultModel);
        int t = 16 * 4, k = config.ExpertsPerToken, e = config.NumExperts, layers = config.NumLayers;
        Assert.Equal(2 * (5 + 2 + 2), report.Rows.Count); // per device count: 5 policies contiguous + 2 per load-aware placement
        foreach (var row in report.Rows)
        {
            int experts = e / row.Devices;
            // The busiest device carries at least the mean share of all T k pairs of a layer (nothing dropped), at most all of them.
            if (row.DroppedShare == 0) Assert.InRange(row.MaxDevicePairs, (double)layers * t * k / row.Devices, layers * t * k);
            if (row.Policy == "token_drop 1.0")
                Assert.True(row.MaxDevicePairs <= layers * experts * Capacity.Of(1.0, k, t, e), $"{row.Devices} devices: {row.MaxDevicePairs} pairs exceed capacity");
            Assert.True(row.MeanDeviceImbalance >= 1.0);
            Assert.True(row.ModelledMs > 0 && row.WallMs > 0 && row.DeviceWorkMs >= row.ModelledMs);
        }
        Assert.All(report.Rows.Where(r => r.Policy == StragglerConfiguration.VanillaName && r.Placement == "contiguous"), r => Assert.Equal(1.0, r.CostModelSpeedup));
        Assert.Contains("### 4 devices", StragglerTable.Format(report));
        Directory.Delete(data, recursive: true);
    }
}
