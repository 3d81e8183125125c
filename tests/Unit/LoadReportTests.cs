using MoeServe.Cli.Load;

namespace MoeServe.Unit.Tests;

/// <summary>The load benchmark's report: pooled table over rounds, ratios taken within each round, their median.</summary>
public class LoadReportTests
{
    /// <summary>n requests of 10 tokens, each with 9 equal gaps; TTFT 10 ms.</summary>
    private static List<RequestTiming> Requests(int n, double gapSeconds) =>
        Enumerable.Range(0, n).Select(_ => new RequestTiming(200, 0.010, 0.010 + 9 * gapSeconds, Enumerable.Repeat(gapSeconds, 9).ToList(), 10)).ToList();

    private static LoadRound Round(double seconds, int c1Requests, int c16Requests, double c1Gap, double c16Gap, double peerDecode) =>
        new([new LevelResult(1, seconds, Requests(c1Requests, c1Gap)), new LevelResult(16, seconds, Requests(c16Requests, c16Gap))],
            new PeerResult("peer", peerDecode, peerDecode));

    [Fact]
    public void Pooling_adds_the_rounds_requests_and_seconds()
    {
        var rounds = new[] { Round(10, 30, 100, 0.003, 0.010, 300), Round(10, 10, 60, 0.004, 0.012, 250) };
        var pooled = LoadRound.Pool(rounds);
        Assert.Equal([1, 16], pooled.Select(l => l.Concurrency));
        Assert.Equal(40, pooled[0].Completed);
        Assert.Equal(20, pooled[0].Seconds);
        Assert.Equal(40 * 10 / 20.0, pooled[0].OutputTokensPerSecond, 9);
        Assert.Equal(160 * 10 / 20.0, pooled[1].OutputTokensPerSecond, 9);
    }

    [Fact]
    public void Ratios_are_per_round_and_the_median_row_is_their_median()
    {
        // Per round c16/c1 output tok/s: 100/30, 60/10, 90/20 -> x3.33, x6.00, x4.50: median x4.50.
        // Single-stream decode 1/gap: 333.3, 250.0, 200.0 against peers 300, 250, 100 -> x1.11, x1.00, x2.00: median x1.11.
        var rounds = new[]
        {
            Round(10, 30, 100, 0.003, 0.010, 300),
            Round(10, 10, 60, 0.004, 0.012, 250),
            Round(10, 20, 90, 0.005, 0.020, 100),
        };
        string report = LoadReport.Markdown(rounds, "## test");
        var median = report.Split('\n').Single(l => l.StartsWith("| **median**")).Split('|').Select(c => c.Trim()).ToArray();
        var header = report.Split('\n').Single(l => l.StartsWith("| round")).Split('|').Select(c => c.Trim()).ToArray();
        string Cell(string column) => median[Array.IndexOf(header, column)];
        Assert.Equal("**x4.50**", Cell("c16/c1 output tok/s"));
        Assert.Equal("**x1.11**", Cell("MoeServe/peer decode"));
        Assert.Equal("**250.0**", Cell("single-stream decode tok/s"));
        Assert.Contains("| 2 | x6.00 |", report);
    }

    [Fact]
    public void Failed_requests_are_listed_by_reason_under_the_table()
    {
        var requests = Requests(5, 0.003);
        requests.Add(new RequestTiming(0, null, 0.1, [], 0, "connection: Connection refused"));
        requests.Add(new RequestTiming(0, null, 0.1, [], 0, "connection: Connection refused"));
        requests.Add(new RequestTiming(200, null, 0.1, [], 0)); // a stream that ended before its first token
        requests.Add(new RequestTiming(429, null, 0.1, [], 0, "status 429: queue full")); // refused, not an error
        var level = new LevelResult(4, 10, requests);
        Assert.Equal(3, level.Errors);
        Assert.Equal("\n- errors at concurrency 4: 2 x connection: Connection refused; 1 x 200 without a token chunk\n", LoadReport.FailureLines([level]));
        Assert.Equal("", LoadReport.FailureLines([new LevelResult(1, 10, Requests(3, 0.003))]));
    }
}
