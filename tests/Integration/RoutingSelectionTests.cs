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
    [InlineData("laser")]
    [InlineData("token_drop")]
    [InlineData("expanded_drop")]
    public async Task Policy_that_is_not_implemented_yet_is_400_with_a_clear_message(string policy)
    {
        // The contract names four policies; the ones this build does not execute must be refused, not silently run as vanilla.
        var response = await HttpApi.PostAsync(Http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 1), Policy(policy));
        if (response.Status == 200)
        {
            // Implemented by now: then the response must say so.
            Assert.Equal(policy, response.Header("X-Routing-Policy"));
            Assert.Equal(policy, HttpApi.Text(response.Json["moe_routing"]!["policy"]));
            return;
        }
        var error = HttpApi.AssertOpenAiError(response, 400);
        string message = HttpApi.Text(error["message"]);
        Assert.Contains(policy, message);
        Assert.Contains("not implemented", message);
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
