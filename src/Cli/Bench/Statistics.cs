namespace MoeServe.Cli.Bench;

/// <summary>Order statistics over timing samples.</summary>
public static class Statistics
{
    /// <summary>
    /// The <paramref name="p"/>-th percentile (0..100) with linear interpolation between closest ranks
    /// (numpy's default), so p99 over a few hundred steps is not just the single slowest one.
    /// </summary>
    public static double Percentile(IReadOnlyList<double> samples, double p)
    {
        if (samples.Count == 0) throw new ArgumentException("no samples", nameof(samples));
        var sorted = samples.Order().ToArray();
        double rank = p / 100.0 * (sorted.Length - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    public static double Median(IReadOnlyList<double> samples) => Percentile(samples, 50);
}
