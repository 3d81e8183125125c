using MoeServe.Cli.Straggler;

namespace MoeServe.Unit.Tests;

/// <summary>How the straggler benchmark turns repeated passes into one row.</summary>
public class StragglerPassTests
{
    /// <summary>One batch, one layer, two devices: [device 0 seconds, device 1 seconds] per pass.</summary>
    private static StragglerPass Pass(double device0, double device1, double wall)
    {
        var pass = new StragglerPass { WallSeconds = wall };
        pass.DeviceSeconds.Add([[device0, device1]]);
        pass.DevicePairs.Add([[30, 10]]);
        pass.DroppedPairs.Add(4);
        pass.BatchTokens.Add(20);
        return pass;
    }

    [Fact]
    public void The_slowest_device_is_taken_after_each_device_time_is_a_median_over_the_repeats()
    {
        // Each device drew one slow sample (0.010 s) in a different pass: the slowest device of each single pass is
        // 0.010, 0.010 and 0.005 s (median 0.010), but each device's own median is 0.005 s.
        var passes = new List<StragglerPass> { Pass(0.010, 0.005, 1.0), Pass(0.005, 0.010, 3.0), Pass(0.005, 0.005, 2.0) };
        var row = StragglerPass.Combine(passes, devices: 2, placement: "contiguous", policy: "vanilla", topK: 2);
        Assert.Equal(5.0, row.ModelledMs, 9);
        Assert.Equal(10.0, row.DeviceWorkMs, 9);
        Assert.Equal(2000.0, row.WallMs, 9); // median of the passes' wall totals, per batch
        Assert.Equal(30, row.MaxDevicePairs);
        Assert.Equal(1.5, row.MeanDeviceImbalance, 9); // 30 / mean(30, 10)
        Assert.Equal(4.0 / (20 * 2 * 1), row.DroppedShare, 9);
    }
}
