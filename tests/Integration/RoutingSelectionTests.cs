using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>Per-request routing selection through the X-Routing-Policy header and the moe_routing body extension.</summary>
[Collection(ServerCollection.Name)]
public sealed class RoutingSelectionTests(ServerFixture fixture)
{
    private HttpClient Http => fixture.Http;

    private static KeyValuePair<string, string>[] Policy(string value) => [new("X-Routing-Policy", value)];

    [Theory]
    [InlineData(HttpApi.Chat)]
    [InlineData(HttpApi.Completions)]
    public async Task Vanilla_header_is_echoed_in_response_header_and_body(string path)
    {
        JsonNode request = path == HttpApi.Chat ? HttpApi.ChatBody(maxTokens: 2) : HttpApi.CompletionBody("route me", maxTokens: 2);
        var response = await HttpApi.PostAsync(Http, path, request, Policy("vanilla"));
        Assert.True(response.Status == 200, response.ToString());
        Assert.Equal("vanilla", response.Header("X-Routing-Policy"));
        Assert.Equal("none", response.Header("X-Capacity-Factor"));
        var routing = response.Json["moe_routing"]!;
        Assert.Equal("vanilla", HttpApi.Text(routing["policy"]));
        Assert.Null(routing["capacity_factor"]);
        Assert.Equal(0, HttpApi.Int(routing["dropped_pairs"]));
        Assert.Equal(0, HttpApi.Int(routing["rerouted_pairs"]));
    }

    [Fact]
    public async Task Default_policy_is_reported_without_any_selection()
    {
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 1));
        Assert.Equal(200, response.Status);
        Assert.Equal("vanilla", response.Header("X-Routing-Policy"));
        Assert.Equal("vanilla", HttpApi.Text(response.Json["moe_routing"]!["policy"]));
    }

    [Fact]
    public async Task Streaming_response_carries_the_routing_header_and_the_usage_chunk_reports_it()
    {
        var request = HttpApi.ChatBody(maxTokens: 2);
        request["stream"] = true;
        request["stream_options"] = new JsonObject { ["include_usage"] = true };
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, request, Policy("vanilla"));
        Assert.Equal(200, response.Status);
        Assert.Equal("vanilla", response.Header("X-Routing-Policy"));
        var payloads = HttpApi.ParseSse(response.Body);
        Assert.Equal("vanilla", HttpApi.Text(JsonNode.Parse(payloads[^2])!["moe_routing"]!["policy"]));
    }

    [Fact]
    public async Task Body_extension_and_agreeing_header_are_accepted()
    {
        var request = HttpApi.ChatBody(maxTokens: 1);
        request["moe_routing"] = new JsonObject { ["policy"] = "vanilla" };
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, request, Policy("vanilla"));
        Assert.True(response.Status == 200, response.ToString());
        Assert.Equal("vanilla", HttpApi.Text(response.Json["moe_routing"]!["policy"]));
    }

    [Fact]
    public async Task Unknown_policy_header_is_400()
    {
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 1), Policy("bogus"));
        var error = HttpApi.AssertOpenAiError(response, 400);
        Assert.Contains("bogus", HttpApi.Text(error["message"]));
    }

    [Fact]
    public async Task Unknown_policy_in_body_is_400()
    {
        var request = HttpApi.CompletionBody("x", maxTokens: 1);
        request["moe_routing"] = new JsonObject { ["policy"] = "bogus" };
        var error = HttpApi.AssertOpenAiError(await HttpApi.PostAsync(Http, HttpApi.Completions, request), 400, expectedParam: "moe_routing.policy");
        Assert.Contains("bogus", HttpApi.Text(error["message"]));
    }

    [Fact]
    public async Task Header_and_body_disagreeing_is_400_that_says_so()
    {
        var request = HttpApi.ChatBody(maxTokens: 1);
        request["moe_routing"] = new JsonObject { ["policy"] = "token_drop" };
        var error = HttpApi.AssertOpenAiError(await HttpApi.PostAsync(Http, HttpApi.Chat, request, Policy("vanilla")), 400);
        Assert.Contains("disagree", HttpApi.Text(error["message"]));
    }

    [Fact]
    public async Task Capacity_header_and_body_disagreeing_is_400()
    {
        var request = HttpApi.ChatBody(maxTokens: 1);
        request["moe_routing"] = new JsonObject { ["capacity_factor"] = 2.0 };
        var error = HttpApi.AssertOpenAiError(await HttpApi.PostAsync(Http, HttpApi.Chat, request, [new("X-Capacity-Factor", "1.5")]), 400);
        Assert.Contains("disagree", HttpApi.Text(error["message"]));
    }

    [Theory]
    [InlineData("laser", null)]
    [InlineData("token_drop", "1.5")]
    [InlineData("expanded_drop", "2")]
    public async Task Every_policy_is_served_and_reported(string policy, string? capacity)
    {
        var headers = capacity is null ? Policy(policy) : [.. Policy(policy), new("X-Capacity-Factor", capacity)];
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 4), headers);
        Assert.Equal(200, response.Status);
        Assert.Equal(policy, response.Header("X-Routing-Policy"));
        Assert.Equal(capacity ?? "none", response.Header("X-Capacity-Factor"));
        var routing = response.Json["moe_routing"]!;
        Assert.Equal(policy, HttpApi.Text(routing["policy"]));
        if (capacity is null) Assert.Null(routing["capacity_factor"]);
        else Assert.Equal(double.Parse(capacity, System.Globalization.CultureInfo.InvariantCulture), routing["capacity_factor"]!.GetValue<double>());
        Assert.True(routing["dropped_pairs"]!.GetValue<long>() >= 0 && routing["rerouted_pairs"]!.GetValue<long>() >= 0);
    }

    [Fact]
    public async Task Capacity_factor_from_configuration_applies_when_the_request_names_none()
    {
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 2), Policy("token_drop"));
        Assert.Equal(200, response.Status);
        Assert.Equal("1", response.Header("X-Capacity-Factor")); // Routing:CapacityFactor in appsettings.json
    }

    /// <summary>
    /// A LASER request and a vanilla request generating at the same time share engine steps; each gets its
    /// own policy, and the per-policy load matrix and metrics show both.
    /// </summary>
    [Fact]
    public async Task Requests_with_different_policies_in_the_same_batch_each_get_their_own()
    {
        JsonObject Body()
        {
            var body = HttpApi.CompletionBody(new JsonArray(Enumerable.Range(0, 48).Select(i => (JsonNode)JsonValue.Create(10 + i)!).ToArray()), maxTokens: 48);
            body["ignore_eos"] = true;
            return body;
        }
        var laser = HttpApi.PostAsync(Http, HttpApi.Completions, Body(), Policy("laser"));
        var vanilla = HttpApi.PostAsync(Http, HttpApi.Completions, Body());
        var (l, v) = (await laser, await vanilla);
        Assert.Equal(200, l.Status);
        Assert.Equal(200, v.Status);
        Assert.Equal("laser", HttpApi.Text(l.Json["moe_routing"]!["policy"]));
        Assert.Equal("vanilla", HttpApi.Text(v.Json["moe_routing"]!["policy"]));
        Assert.Equal(0, v.Json["moe_routing"]!["rerouted_pairs"]!.GetValue<long>());
        Assert.Equal(0, v.Json["moe_routing"]!["dropped_pairs"]!.GetValue<long>());

        var load = (await HttpApi.GetAsync(Http, "/v1/moe/load")).Json;
        var byPolicy = load["by_policy"]!.AsObject();
        Assert.True(byPolicy.ContainsKey("laser") && byPolicy.ContainsKey("vanilla"), load.ToJsonString());
        long laserPairs = byPolicy["laser"]!.AsArray().SelectMany(layer => layer!.AsArray()).Sum(n => n!.GetValue<long>());
        Assert.True(laserPairs > 0);

        string metrics = (await HttpApi.GetAsync(Http, "/metrics")).Body;
        Assert.True(HttpApi.MetricValue(metrics, "moeserve_request_latency_seconds_count{policy=\"laser\"}") > 0);
        Assert.True(HttpApi.MetricValue(metrics, "moeserve_request_latency_seconds_count{policy=\"vanilla\"}") > 0);
        if (l.Json["moe_routing"]!["rerouted_pairs"]!.GetValue<long>() > 0)
            Assert.Contains("moeserve_expert_rerouted_total{layer=", metrics);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("-1")]
    [InlineData("0")]
    [InlineData("NaN")]
    public async Task Bad_capacity_factor_header_is_400(string value)
    {
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 1), [new("X-Capacity-Factor", value)]);
        HttpApi.AssertOpenAiError(response, 400, expectedParam: "X-Capacity-Factor");
    }
}
