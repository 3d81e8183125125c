using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;

namespace MoeServe.Integration.Tests;

/// <summary>Client disconnects cancel generation and free the slot.</summary>
[Collection(ServerCollection.Name)]
public sealed class DisconnectTests(ServerFixture fixture)
{
    /// <summary>
    /// Opens a streaming request on a connection of its own and reads <paramref name="chunks"/> events.
    /// The handler never drains an unread body, so disposing it closes the TCP connection at once.
    /// </summary>
    public static async Task<(HttpClient Client, HttpResponseMessage Response, Stream Body)> OpenStreamAsync(
        string baseUrl, string path, JsonNode body, int chunks)
    {
        var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero, PooledConnectionLifetime = TimeSpan.Zero };
        var client = new HttpClient(handler) { BaseAddress = new Uri(baseUrl), Timeout = Timeout.InfiniteTimeSpan };
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        var stream = await response.Content.ReadAsStreamAsync();
        var reader = new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: false, bufferSize: 1, leaveOpen: true);
        int seen = 0;
        while (seen < chunks)
        {
            string? line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.NotNull(line);
            if (line.StartsWith("data: {")) seen++;
        }
        return (client, response, stream);
    }

    [Fact]
    public async Task Aborted_stream_frees_its_slot_within_2_seconds()
    {
        var http = fixture.Http;
        var request = HttpApi.ChatBody(maxTokens: 1500, temperature: 1);
        request["stream"] = true;
        request["ignore_eos"] = true; // the request must still be running when the client goes away
        double cancelledBefore = HttpApi.MetricValue((await HttpApi.GetAsync(http, "/metrics")).Body, "moeserve_requests_total{finish_reason=\"cancelled\"}") ?? 0;

        var (client, response, body) = await OpenStreamAsync(fixture.BaseUrl, HttpApi.Chat, request, chunks: 3);
        // While it streams, the sequence occupies a running slot.
        Assert.Equal(1, await HttpApi.MetricAsync(http, "moeserve_requests_running"));

        var clock = Stopwatch.StartNew();
        body.Dispose();
        response.Dispose();
        client.Dispose();

        double? running = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(2))
        {
            running = await HttpApi.MetricAsync(http, "moeserve_requests_running");
            if (running == 0) break;
            await Task.Delay(50);
        }
        Assert.True(running == 0, $"moeserve_requests_running still {running} {clock.ElapsedMilliseconds} ms after the client went away");

        // The engine recorded the sequence as cancelled, not as finished by length.
        double cancelledAfter = 0;
        for (int i = 0; i < 20 && cancelledAfter <= cancelledBefore; i++)
        {
            cancelledAfter = HttpApi.MetricValue((await HttpApi.GetAsync(http, "/metrics")).Body, "moeserve_requests_total{finish_reason=\"cancelled\"}") ?? 0;
            if (cancelledAfter <= cancelledBefore) await Task.Delay(50);
        }
        Assert.Equal(cancelledBefore + 1, cancelledAfter);

        // And the server goes on serving.
        var ok = await HttpApi.PostOkAsync(http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 2));
        Assert.Equal(2, HttpApi.Int(ok["usage"]!["completion_tokens"]));
        Assert.Equal(0, await HttpApi.MetricAsync(http, "moeserve_requests_running"));
    }

    [Fact]
    public async Task Aborted_non_streaming_request_frees_its_slot()
    {
        var http = fixture.Http;
        using var cts = new CancellationTokenSource();
        var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0 };
        using var client = new HttpClient(handler) { BaseAddress = new Uri(fixture.BaseUrl), Timeout = Timeout.InfiniteTimeSpan };
        var body = HttpApi.ChatBody(maxTokens: 1500, temperature: 1);
        body["ignore_eos"] = true; // the request must still be running when the client goes away
        var send = client.PostAsync(HttpApi.Chat, new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), cts.Token);

        // Wait until the engine runs it, then hang up.
        var clock = Stopwatch.StartNew();
        while (await HttpApi.MetricAsync(http, "moeserve_requests_running") != 1)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the request never started running");
            Assert.False(send.IsCompleted, "the 1500-token request finished before it could be aborted");
            await Task.Delay(20);
        }
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send);

        clock.Restart();
        double? running = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(2))
        {
            running = await HttpApi.MetricAsync(http, "moeserve_requests_running");
            if (running == 0) break;
            await Task.Delay(50);
        }
        Assert.True(running == 0, $"moeserve_requests_running still {running} after the client went away");
    }
}

/// <summary>A server with one engine loop, one running slot and no queue: a second request while one runs gets 429.</summary>
public sealed class QueueFullServerFixture : IAsyncLifetime
{
    public ServerProcess Server { get; private set; } = null!;

    public async Task InitializeAsync() =>
        Server = await ServerProcess.StartAsync("queue", "--Engine:Loops=1", "--Engine:MaxRunningSequences=1", "--Engine:MaxQueuedRequests=0");

    public async Task DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
    }
}

public sealed class QueueFullTests(QueueFullServerFixture fixture) : IClassFixture<QueueFullServerFixture>
{
    [Fact]
    public async Task Full_queue_is_429_in_openai_shape_and_clears_when_the_running_request_leaves()
    {
        using var http = new HttpClient { BaseAddress = fixture.Server.BaseUri, Timeout = TimeSpan.FromSeconds(60) };
        var request = HttpApi.ChatBody(maxTokens: 1500, temperature: 1);
        request["stream"] = true;
        request["ignore_eos"] = true; // a sampled end-of-sequence token must not free the slot early
        var (client, response, body) = await DisconnectTests.OpenStreamAsync(fixture.Server.BaseUrl, HttpApi.Chat, request, chunks: 2);
        try
        {
            var refused = await HttpApi.PostAsync(http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 1));
            HttpApi.AssertOpenAiError(refused, 429);
        }
        finally
        {
            body.Dispose();
            response.Dispose();
            client.Dispose();
        }

        // Once the first request is gone, the slot is free again.
        var clock = Stopwatch.StartNew();
        ApiResponse? last = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            last = await HttpApi.PostAsync(http, HttpApi.Chat, HttpApi.ChatBody(maxTokens: 1));
            if (last.Status == 200) break;
            Assert.Equal(429, last.Status);
            await Task.Delay(100);
        }
        Assert.True(last?.Status == 200, $"slot not freed: {last}");
    }
}
