using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>The Swagger UI as a real headless Chromium renders it, and the OpenAPI document behind it.</summary>
[Collection(ServerCollection.Name)]
public sealed class SwaggerUiTests(ServerFixture fixture)
{
    private const string ChatOperation = "#operations-OpenAI-CreateChatCompletion";

    [RequiresBinaryFact(HeadlessChromium.Binary, "chromium")]
    public async Task Rendered_swagger_ui_lists_the_chat_completions_operation()
    {
        var (dom, log) = await HeadlessChromium.DumpDomAsync(fixture.BaseUrl + "/swagger/index.html");
        Assert.True(dom.Contains("swagger-ui", StringComparison.Ordinal), "no Swagger UI in the DOM:\n" + dom[..Math.Min(dom.Length, 2000)] + "\n" + log);
        // Present only once the UI has fetched swagger.json and rendered the operations.
        Assert.Contains("/v1/chat/completions", dom);
        Assert.Contains("operations-OpenAI-CreateChatCompletion", dom);
        Assert.Contains("Creates a chat completion", dom);
        Assert.Contains("/v1/completions", dom);
        Assert.Contains("/v1/models", dom);
        Assert.Contains("MoeServe", dom);
    }

    [RequiresBinaryFact(HeadlessChromium.Binary, "chromium")]
    public async Task Expanded_chat_operation_shows_the_routing_header_parameter_and_a_screenshot_is_kept()
    {
        await using var browser = await HeadlessChromium.LaunchAsync();
        await browser.SendAsync("Page.enable");
        await browser.NavigateAsync(fixture.BaseUrl + "/swagger/index.html");
        await browser.WaitForAsync($"document.querySelector('{ChatOperation}')", TimeSpan.FromSeconds(30), "the chat operation to render");

        // Expanding the operation is what a person does to see its parameters.
        await browser.ClickAsync($"{ChatOperation} .opblock-summary-control");
        await browser.WaitForAsync($"document.querySelector('{ChatOperation}').innerText.includes('X-Routing-Policy')", TimeSpan.FromSeconds(20),
            "X-Routing-Policy among the expanded operation's parameters", $"document.querySelector('{ChatOperation}').outerHTML.slice(0, 6000)");
        string text = (await browser.EvaluateAsync($"document.querySelector('{ChatOperation}').innerText"))!.GetValue<string>();
        Assert.Contains("X-Capacity-Factor", text);
        Assert.Contains("header", text);
        Assert.Contains("CreateChatCompletion", (await browser.EvaluateAsync($"document.querySelector('{ChatOperation}').id"))!.GetValue<string>());

        byte[] png = await browser.ScreenshotAsync();
        Assert.True(png.Length > 1000, $"screenshot of {png.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        string file = Path.Combine(RepoPaths.ArtifactsDir, "swagger-chat-completions.png");
        await File.WriteAllBytesAsync(file, png);
        Assert.True(new FileInfo(file).Length > 0);
    }

    [Fact]
    public async Task Swagger_json_documents_the_routing_header_and_the_request_schema()
    {
        var response = await HttpApi.GetAsync(fixture.Http, "/swagger/v1/swagger.json");
        Assert.Equal(200, response.Status);
        var doc = response.Json;
        var post = doc["paths"]!["/v1/chat/completions"]!["post"]!;
        Assert.Equal("CreateChatCompletion", post["operationId"]!.GetValue<string>());

        var parameters = post["parameters"]!.AsArray();
        var policy = parameters.Single(p => p!["name"]!.GetValue<string>() == "X-Routing-Policy")!;
        Assert.Equal("header", policy["in"]!.GetValue<string>());
        var allowed = policy["schema"]!["enum"]!.AsArray().Select(v => v!.GetValue<string>()).ToList();
        Assert.Equal(["expanded_drop", "laser", "token_drop", "vanilla"], allowed.Order().ToList());
        Assert.Contains(parameters, p => p!["name"]!.GetValue<string>() == "X-Capacity-Factor");

        // The request body schema, resolved through its $ref, has messages.
        var schema = post["requestBody"]!["content"]!["application/json"]!["schema"]!;
        string reference = schema["$ref"]!.GetValue<string>();
        var requestSchema = doc["components"]!["schemas"]![reference.Split('/')[^1]]!;
        var properties = requestSchema["properties"]!.AsObject();
        Assert.True(properties.ContainsKey("messages"), requestSchema.ToJsonString());
        Assert.True(properties.ContainsKey("model"));
        Assert.True(properties.ContainsKey("max_tokens"), "properties should be snake_case as on the wire: " + string.Join(", ", properties.Select(p => p.Key)));
        Assert.True(properties.ContainsKey("moe_routing"));

        // The 200 response documents the routing headers it returns.
        var headers = post["responses"]!["200"]!["headers"]!.AsObject();
        Assert.True(headers.ContainsKey("X-Routing-Policy"));
    }

    [Theory]
    [InlineData("/v1/chat/completions", "ChatCompletionResponse", "ChatCompletionChunk")]
    [InlineData("/v1/completions", "CompletionResponse", "CompletionResponse")]
    public async Task Swagger_json_documents_the_json_and_the_event_stream_200_answers(string path, string jsonSchema, string streamSchema)
    {
        var doc = (await HttpApi.GetAsync(fixture.Http, "/swagger/v1/swagger.json")).Json;
        var content = doc["paths"]![path]!["post"]!["responses"]!["200"]!["content"]!.AsObject();
        Assert.True(content.ContainsKey("application/json"), $"{path}: 200 documents only {string.Join(", ", content.Select(c => c.Key))}");
        Assert.EndsWith("/" + jsonSchema, content["application/json"]!["schema"]!["$ref"]!.GetValue<string>());
        Assert.True(content.ContainsKey("text/event-stream"), $"{path}: 200 documents only {string.Join(", ", content.Select(c => c.Key))}");
        Assert.EndsWith("/" + streamSchema, content["text/event-stream"]!["schema"]!["$ref"]!.GetValue<string>());
    }
}
