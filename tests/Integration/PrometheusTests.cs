using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>A real Prometheus scrapes the real server; the contract's dashboard queries return numbers.</summary>
[Collection(ServerCollection.Name)]
public sealed class PrometheusTests(ServerFixture fixture)
{
    private const string PrometheusBinary = "/usr/bin/prometheus";

    private const string P99Query =
        "histogram_quantile(0.99, sum by (le) (rate(moeserve_request_latency_seconds_bucket[1m])))";

    [RequiresBinaryFact(PrometheusBinary, "prometheus")]
    public async Task Prometheus_scrapes_metrics_and_computes_p99_latency()
    {
        string dir = Directory.CreateTempSubdirectory("moeserve-prometheus-").FullName;
        int port = RepoPaths.FreeTcpPort();
        string config = Path.Combine(dir, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: moeserve
                metrics_path: /metrics
                static_configs:
                  - targets: ['127.0.0.1:{fixture.Server.Port}']
            """);

        await using var prometheus = ChildProcess.Start(PrometheusBinary,
        [
            $"--config.file={config}",
            $"--storage.tsdb.path={Path.Combine(dir, "data")}",
            $"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ], dir);
        using var prom = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                Assert.False(prometheus.HasExited, "prometheus exited:\n" + prometheus.Output);
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "prometheus not ready within 30 s:\n" + prometheus.Output);
                try
                {
                    using var ready = await prom.GetAsync("/-/ready");
                    if (ready.IsSuccessStatusCode) break;
                }
                catch (HttpRequestException)
                {
                }
                await Task.Delay(200);
            }

            // Keep latency observations coming while Prometheus gathers the samples rate() needs.
            clock.Restart();
            double? p99 = null;
            string lastAnswer = "";
            while (clock.Elapsed < TimeSpan.FromSeconds(30))
            {
                await HttpApi.PostOkAsync(fixture.Http, HttpApi.Completions, HttpApi.CompletionBody("scrape me", maxTokens: 2));
                await HttpApi.PostOkAsync(fixture.Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 2));
                var result = await QueryAsync(prom, P99Query);
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

            var up = await QueryAsync(prom, "up{job=\"moeserve\"}");
            Assert.Equal("1", HttpApi.Text(Assert.Single(up)!["value"]![1]));

            var experts = await QueryAsync(prom, "moeserve_expert_tokens_total");
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
                Assert.True((await QueryAsync(prom, name)).Count > 0, $"{name} not scraped");
        }
        finally
        {
            await prometheus.DisposeAsync();
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    private static async Task<JsonArray> QueryAsync(HttpClient prom, string query)
    {
        using var response = await prom.GetAsync("/api/v1/query?query=" + Uri.EscapeDataString(query));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{query}: {text}");
        var json = JsonNode.Parse(text)!;
        Assert.Equal("success", HttpApi.Text(json["status"]));
        return json["data"]!["result"]!.AsArray();
    }
}
