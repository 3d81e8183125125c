using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text;
using MoeServe.Integration.Tests.Infrastructure;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace MoeServe.Integration.Tests;

/// <summary>The official OpenAI .NET SDK (2.15.0) against the real server over real HTTP.</summary>
[Collection(ServerCollection.Name)]
public sealed class OpenAiSdkTests(ServerFixture fixture)
{
    public static OpenAIClientOptions Options(string baseUrl) => new()
    {
        Endpoint = new Uri(baseUrl + "/v1"),
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0), // an error must surface, not be retried away
        NetworkTimeout = TimeSpan.FromSeconds(120),
    };

    private ChatClient Chat(string model = RepoPaths.ModelId) => new(model, new ApiKeyCredential("unused-key"), Options(fixture.BaseUrl));

    private static List<ChatMessage> Conversation() =>
    [
        new SystemChatMessage("You are a test."),
        new UserChatMessage("Tell me about mixtures of experts."),
    ];

    [Fact]
    public async Task Chat_completion_returns_text_finish_reason_and_consistent_usage()
    {
        var options = new ChatCompletionOptions { Temperature = 0f, MaxOutputTokenCount = 12 };
        ChatCompletion completion = await Chat().CompleteChatAsync(Conversation(), options);

        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(RepoPaths.ModelId, completion.Model);
        Assert.StartsWith("chatcmpl-", completion.Id);
        string text = Assert.Single(completion.Content).Text;
        Assert.False(string.IsNullOrEmpty(text));
        Assert.Contains(completion.FinishReason, new[] { ChatFinishReason.Length, ChatFinishReason.Stop });
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.InRange(completion.Usage.OutputTokenCount, 1, 12);
        if (completion.FinishReason == ChatFinishReason.Length) Assert.Equal(12, completion.Usage.OutputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);
    }

    [Fact]
    public async Task Greedy_streaming_text_equals_non_streaming_text_and_usage_arrives()
    {
        const int max = 24;
        var client = Chat();
        ChatCompletion whole = await client.CompleteChatAsync(Conversation(), new ChatCompletionOptions { Temperature = 0f, MaxOutputTokenCount = max });

        // The 2.15 SDK asks for stream_options.include_usage itself on every streaming call (its StreamOptions
        // property is internal); the usage chunk arriving below is what proves the server honours it.
        var streamed = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        ChatMessageRole? role = null;
        int updates = 0;
        await foreach (var update in client.CompleteChatStreamingAsync(Conversation(), new ChatCompletionOptions { Temperature = 0f, MaxOutputTokenCount = max }))
        {
            updates++;
            role ??= update.Role;
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            if (update.FinishReason is not null) finish = update.FinishReason;
            if (update.Usage is not null) usage = update.Usage;
        }

        Assert.True(updates > 2, $"only {updates} streamed updates");
        Assert.Equal(ChatMessageRole.Assistant, role);
        Assert.Equal(Assert.Single(whole.Content).Text, streamed.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.NotNull(usage);
        Assert.Equal(whole.Usage.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(usage.InputTokenCount + usage.OutputTokenCount, usage.TotalTokenCount);
    }

    [Fact]
    public async Task Model_client_lists_the_served_model()
    {
        var models = new OpenAIModelClient(new ApiKeyCredential("unused-key"), Options(fixture.BaseUrl));
        OpenAIModelCollection list = await models.GetModelsAsync();
        var model = Assert.Single(list);
        Assert.Equal(RepoPaths.ModelId, model.Id);
        Assert.False(string.IsNullOrEmpty(model.OwnedBy));
        Assert.True(model.CreatedAt > DateTimeOffset.UnixEpoch);
    }

    [Fact]
    public async Task Unknown_model_surfaces_as_ClientResultException_404_with_the_server_message()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat("no-such-model").CompleteChatAsync(Conversation(), new ChatCompletionOptions { MaxOutputTokenCount = 4 }));
        Assert.Equal(404, e.Status);
        Assert.Contains("no-such-model", e.Message);
        string raw = e.GetRawResponse()!.Content.ToString();
        Assert.Contains("model_not_found", raw);
    }

    [Fact]
    public async Task Out_of_range_temperature_surfaces_as_ClientResultException_400_with_the_server_message()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat().CompleteChatAsync(Conversation(), new ChatCompletionOptions { Temperature = 5f, MaxOutputTokenCount = 4 }));
        Assert.Equal(400, e.Status);
        Assert.Contains("temperature", e.Message);
        Assert.Contains("\"param\":\"temperature\"", e.GetRawResponse()!.Content.ToString().Replace(" ", ""));
    }

    [Fact]
    public async Task Streaming_error_before_the_stream_starts_surfaces_as_ClientResultException()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var _ in Chat().CompleteChatStreamingAsync(Conversation(), new ChatCompletionOptions { TopP = 2f, MaxOutputTokenCount = 4 }))
            {
            }
        });
        Assert.Equal(400, e.Status);
        Assert.Contains("top_p", e.Message);
    }
}

/// <summary>A second server with an API key configured: the SDK's key decides.</summary>
public sealed class ApiKeyServerFixture : IAsyncLifetime
{
    public const string Key = "secret";
    public ServerProcess Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await ServerProcess.StartAsync("apikey", $"--Server:ApiKeys:0={Key}");

    public async Task DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
    }
}

public sealed class ApiKeyTests(ApiKeyServerFixture fixture) : IClassFixture<ApiKeyServerFixture>
{
    private ChatClient Chat(string key) => new(RepoPaths.ModelId, new ApiKeyCredential(key), OpenAiSdkTests.Options(fixture.Server.BaseUrl));

    [Fact]
    public async Task Wrong_key_is_401_through_the_sdk()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat("wrong").CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 }));
        Assert.Equal(401, e.Status);
        Assert.Contains("invalid_api_key", e.GetRawResponse()!.Content.ToString());
        Assert.Contains("Incorrect API key", e.Message);
    }

    [Fact]
    public async Task Right_key_works_through_the_sdk()
    {
        ChatCompletion completion = await Chat(ApiKeyServerFixture.Key).CompleteChatAsync([new UserChatMessage("hi")],
            new ChatCompletionOptions { MaxOutputTokenCount = 3, Temperature = 0f });
        Assert.False(string.IsNullOrEmpty(Assert.Single(completion.Content).Text));

        var models = new OpenAIModelClient(new ApiKeyCredential(ApiKeyServerFixture.Key), OpenAiSdkTests.Options(fixture.Server.BaseUrl));
        Assert.Equal(RepoPaths.ModelId, Assert.Single((await models.GetModelsAsync()).Value).Id);
    }

    [Fact]
    public async Task Missing_key_is_401_in_openai_shape_while_health_and_metrics_stay_open()
    {
        using var http = new HttpClient { BaseAddress = fixture.Server.BaseUri };
        var noKey = await HttpApi.PostAsync(http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 2));
        HttpApi.AssertOpenAiError(noKey, 401, "invalid_api_key");

        var models = await HttpApi.GetAsync(http, "/v1/models");
        HttpApi.AssertOpenAiError(models, 401, "invalid_api_key");

        Assert.Equal(200, (await HttpApi.GetAsync(http, "/health")).Status);
        Assert.Equal(200, (await HttpApi.GetAsync(http, "/metrics")).Status);

        var withKey = await HttpApi.PostAsync(http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 2), [new("Authorization", "Bearer " + ApiKeyServerFixture.Key)]);
        Assert.Equal(200, withKey.Status);
    }
}
