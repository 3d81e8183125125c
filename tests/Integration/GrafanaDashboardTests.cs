using System.Diagnostics;
using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>
/// deploy/grafana/moeserve-dashboard.json is what operators import: every query of every panel must evaluate
/// in a real Prometheus scraping the real server and return series, or the panel would show "No data".
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class GrafanaDashboardTests(ServerFixture fixture)
{
    private static string DashboardPath => Path.Combine(RepoPaths.Root, "deploy", "grafana", "moeserve-dashboard.json");

    [Fact]
    public void Dashboard_is_an_importable_grafana_model_on_a_prometheus_datasource()
    {
        var dashboard = JsonNode.Parse(File.ReadAllText(DashboardPath))!;
        Assert.Equal("moeserve", HttpApi.Text(dashboard["uid"]));
        Assert.Equal("datasource", HttpApi.Text(dashboard["templating"]!["list"]![0]!["type"]));
        var panels = dashboard["panels"]!.AsArray();
        Assert.True(panels.Count >= 10);
        Assert.Equal(panels.Count, panels.Select(p => p!["id"]!.GetValue<int>()).Distinct().Count());
        Assert.All(panels, p =>
        {
            Assert.Equal("${datasource}", HttpApi.Text(p!["datasource"]!["uid"]));
            Assert.NotEmpty(p["targets"]!.AsArray());
        });
    }

    [RequiresBinaryFact(PrometheusServer.Binary, "prometheus")]
    public async Task Every_panel_query_returns_series_from_a_real_prometheus()
    {
        var queries = JsonNode.Parse(File.ReadAllText(DashboardPath))!["panels"]!.AsArray()
            .SelectMany(p => p!["targets"]!.AsArray().Select(t => (Panel: HttpApi.Text(p["title"]), Expr: HttpApi.Text(t!["expr"]))))
            .ToList();
        // The contract's metric families, every one of which the dashboard should show.
        foreach (var family in new[] { "moeserve_request_latency_seconds", "moeserve_expert_tokens_total", "moeserve_layer_imbalance",
                     "moeserve_layer_straggler_ratio", "moeserve_device_tokens_total", "moeserve_device_busy_seconds_total",
                     "moeserve_expert_dropped_total", "moeserve_expert_rerouted_total", "moeserve_time_to_first_token_seconds" })
            Assert.Contains(queries, q => q.Expr.Contains(family, StringComparison.Ordinal));

        await using var prometheus = await PrometheusServer.StartAsync("moeserve", $"127.0.0.1:{fixture.Server.Port}");
        var pending = queries.ToList();
        var clock = Stopwatch.StartNew();
        // Traffic of every kind keeps the counters moving while Prometheus gathers the two samples rate() needs:
        // vanilla, token_drop at a tight capacity (drops), LASER (reroutes).
        while (pending.Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            await HttpApi.PostOkAsync(fixture.Http, HttpApi.Chat, HttpApi.ChatBody("dashboard traffic", maxTokens: 4));
            await HttpApi.PostOkAsync(fixture.Http, HttpApi.Completions, HttpApi.CompletionBody("a long enough prompt to overflow a tight capacity " + string.Concat(Enumerable.Repeat("word ", 40)), maxTokens: 2),
                [new("X-Routing-Policy", "token_drop"), new("X-Capacity-Factor", "0.5")]);
            await HttpApi.PostOkAsync(fixture.Http, HttpApi.Completions, HttpApi.CompletionBody("laser routes flat tokens " + string.Concat(Enumerable.Repeat("token ", 40)), maxTokens: 2),
                [new("X-Routing-Policy", "laser")]);
            var answered = new List<(string, string)>();
            foreach (var q in pending)
                if ((await prometheus.QueryAsync(q.Expr)).Count > 0) answered.Add(q);
            pending.RemoveAll(answered.Contains);
            if (pending.Count > 0) await Task.Delay(500);
        }
        Assert.True(pending.Count == 0, "panels without data after 60 s: " + string.Join("; ", pending.Select(q => $"{q.Panel}: {q.Expr}")));
    }
}
