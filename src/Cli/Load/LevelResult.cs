using MoeServe.Cli.Bench;

namespace MoeServe.Cli.Load;

/// <summary>The measurements of one concurrency level, summarised as the benchmark table's row.</summary>
public sealed record LevelResult(int Concurrency, double Seconds, IReadOnlyList<RequestTiming> Requests)
{
    private IEnumerable<RequestTiming> Ok => Requests.Where(r => r.Succeeded);

    public int Completed => Ok.Count();
    public int Rejected => Requests.Count(r => r.Status == 429);
    /// <summary>Requests that neither succeeded nor were refused with 429.</summary>
    public IEnumerable<RequestTiming> Failed => Requests.Where(r => !r.Succeeded && r.Status != 429);
    public int Errors => Failed.Count();
    public double RequestsPerSecond => Completed / Seconds;
    public double OutputTokensPerSecond => Ok.Sum(r => r.OutputTokens) / Seconds;
    public double TtftP50 => P(Ok.Select(r => r.FirstToken!.Value), 50);
    public double TtftP99 => P(Ok.Select(r => r.FirstToken!.Value), 99);
    public double EndToEndP50 => P(Ok.Select(r => r.End), 50);
    public double EndToEndP99 => P(Ok.Select(r => r.End), 99);
    public double InterTokenP50 => P(Ok.SelectMany(r => r.TokenGaps), 50);
    public double InterTokenP99 => P(Ok.SelectMany(r => r.TokenGaps), 99);

    /// <summary>Decode speed one stream sees: tokens after the first over the time they took (median over requests).</summary>
    public double StreamDecodeTokensPerSecond =>
        P(Ok.Where(r => r.TokenGaps.Count > 0).Select(r => r.TokenGaps.Count / r.TokenGaps.Sum()), 50);

    private static double P(IEnumerable<double> values, double percentile)
    {
        var list = values.ToList();
        return list.Count == 0 ? double.NaN : Statistics.Percentile(list, percentile);
    }
}
