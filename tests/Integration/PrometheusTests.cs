using System.Diagnostics;
using System.Globalization;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>A real Prometheus scrapes the real server; the contract's dashboard queries return numbers.</summary>
[Collection(ServerCollection.Name)]
public sealed class PrometheusTests(ServerFixture fixture)
{
    private const string P99Query =
        "histogram_quantile(0.99, sum by (le) (rate(moeserve_request_latency_seconds_bucket[1m])))";

    [RequiresBinaryFact(PrometheusServer.Binary, "prometheus")]
    public async Task Prometheus_scrapes_metrics_and_computes_p99_latency()
    {
        await using var prometheus = await PrometheusServer.StartAsync("moeserve", $"127.0.0.1:{fixture.Server.Port}");

        // Keep latency observations coming while Prometheus gathers the samples rate() needs.
        var clock = Stopwatch.StartNew();
        double? p99 = null;
        string lastAnswer = "";
        while (clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            await HttpApi.PostOkAsync(fixture.Http, HttpApi.Completions, HttpApi.CompletionBody("scrape me", maxTokens: 2));
            await HttpApi.PostOkAsync(fixture.Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 2));
            var result = await prometheus.QueryAsync(P99Query);
            lastAnswer = result.ToJsonString();
            if (result.Count == 1 && double.TryParse(HttpApi.Text(result[0]!["value"]![1]), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v))
            {
                p99 = v;
                break;
            }
            await Task.Delay(300);
        }
        Assert.True(p99 is not null, $"P99 query gave no number within 30 s; last answer {lastAnswer}\n{prometheus.Output}");
        Assert.InRange(p99!.Value, 1e-6, 131.1);

        var up = await prometheus.QueryAsync("up{job=\"moeserve\"}");
        Assert.Equal("1", HttpApi.Text(Assert.Single(up)!["value"]![1]));

        var experts = await prometheus.QueryAsync("moeserve_expert_tokens_total");
        Assert.NotEmpty(experts);
        foreach (var series in experts)
        {
            int layer = int.Parse(HttpApi.Text(series!["metric"]!["layer"]), CultureInfo.InvariantCulture);
            int expert = int.Parse(HttpApi.Text(series["metric"]!["expert"]), CultureInfo.InvariantCulture);
            Assert.InRange(layer, 0, 3);
            Assert.InRange(expert, 0, 7);
            Assert.True(double.Parse(HttpApi.Text(series["value"]![1]), CultureInfo.InvariantCulture) > 0);
        }
        Assert.True(experts.Count <= 4 * 8, "label cardinality beyond layers x experts");

        // The other contract series are scraped too.
        foreach (var name in new[]
                 {
                     "moeserve_time_to_first_token_seconds_bucket", "moeserve_inter_token_latency_seconds_bucket",
                     "moeserve_request_queue_seconds_bucket", "moeserve_requests_running", "moeserve_requests_waiting",
                     "moeserve_prompt_tokens_total", "moeserve_generation_tokens_total",
                 })
            Assert.True((await prometheus.QueryAsync(name)).Count > 0, $"{name} not scraped");
    }
}
