using System.Text.RegularExpressions;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>GET /metrics exposes the metric families the contract names (dashboards and alerts rely on them).</summary>
[Collection(ServerCollection.Name)]
public sealed class MetricsContractTests(ServerFixture fixture)
{
    [Theory]
    [InlineData("moeserve_request_latency_seconds", "histogram")]
    [InlineData("moeserve_time_to_first_token_seconds", "histogram")]
    [InlineData("moeserve_inter_token_latency_seconds", "histogram")]
    [InlineData("moeserve_request_queue_seconds", "histogram")]
    [InlineData("moeserve_requests_running", "gauge")]
    [InlineData("moeserve_requests_waiting", "gauge")]
    [InlineData("moeserve_prompt_tokens_total", "counter")]
    [InlineData("moeserve_generation_tokens_total", "counter")]
    [InlineData("moeserve_expert_tokens_total", "counter")]
    [InlineData("moeserve_expert_dropped_total", "counter")]
    [InlineData("moeserve_expert_rerouted_total", "counter")]
    [InlineData("moeserve_layer_imbalance", "gauge")]
    [InlineData("moeserve_device_tokens_total", "counter")]
    [InlineData("moeserve_device_busy_seconds_total", "counter")]
    [InlineData("moeserve_layer_straggler_ratio", "gauge")]
    public async Task Contract_metric_family_is_exposed(string name, string type)
    {
        await HttpApi.PostOkAsync(fixture.Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 2));
        var metrics = await HttpApi.GetAsync(fixture.Http, "/metrics");
        Assert.Equal(200, metrics.Status);
        Assert.Contains($"# TYPE {name} {type}\n", metrics.Body);
    }

    [Fact]
    public async Task Token_counters_and_latency_histogram_move_with_a_request()
    {
        var before = (await HttpApi.GetAsync(fixture.Http, "/metrics")).Body;
        var body = await HttpApi.PostOkAsync(fixture.Http, HttpApi.Completions, HttpApi.CompletionBody("count me", maxTokens: 5));
        int prompt = HttpApi.Int(body["usage"]!["prompt_tokens"]);
        var after = (await HttpApi.GetAsync(fixture.Http, "/metrics")).Body;

        Assert.Equal(5, HttpApi.MetricValue(after, "moeserve_generation_tokens_total") - HttpApi.MetricValue(before, "moeserve_generation_tokens_total"));
        Assert.Equal(prompt, HttpApi.MetricValue(after, "moeserve_prompt_tokens_total") - HttpApi.MetricValue(before, "moeserve_prompt_tokens_total"));
        const string count = "moeserve_request_latency_seconds_count{policy=\"vanilla\"}";
        Assert.Equal(1, HttpApi.MetricValue(after, count) - (HttpApi.MetricValue(before, count) ?? 0));

        // Every (prompt + generated) token visits top-k = 2 experts in each of the 4 layers... except the last
        // generated token, which is never fed back.
        double experts = (HttpApi.MetricValue(after, "moeserve_expert_tokens_total") ?? 0) - (HttpApi.MetricValue(before, "moeserve_expert_tokens_total") ?? 0);
        Assert.Equal((prompt + 5 - 1) * 2 * 4, experts);

        // Bounded labels: layer in [0, 4), expert in [0, 8).
        foreach (Match m in Regex.Matches(after, "^moeserve_expert_tokens_total\\{([^}]*)\\}", RegexOptions.Multiline))
        {
            var labels = m.Groups[1].Value;
            Assert.Matches("layer=\"[0-3]\"", labels);
            Assert.Matches("expert=\"[0-7]\"", labels);
        }
    }
}
