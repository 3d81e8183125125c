using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;

namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>
/// The real headless Chromium: a one-shot --dump-dom run, and a DevTools-protocol session (over its WebSocket)
/// for pages that need a click before they show what is tested.
/// </summary>
public sealed class HeadlessChromium : IAsyncDisposable
{
    public const string Binary = "/usr/bin/chromium";

    private static readonly string[] CommonFlags =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions", "--mute-audio",
    ];

    private readonly ChildProcess _process;
    private readonly string _profile;
    private readonly ClientWebSocket _socket = new();
    private int _nextId;

    private HeadlessChromium(ChildProcess process, string profile)
    {
        _process = process;
        _profile = profile;
    }

    public string Output => _process.Output;

    /// <summary>Runs chromium --dump-dom on <paramref name="url"/> and returns the serialized DOM.</summary>
    public static async Task<(string Dom, string Log)> DumpDomAsync(string url, int virtualTimeBudgetMs = 10000)
    {
        string profile = Directory.CreateTempSubdirectory("moeserve-chromium-").FullName;
        try
        {
            await using var chromium = ChildProcess.Start(Binary,
                [.. CommonFlags, $"--user-data-dir={profile}", $"--virtual-time-budget={virtualTimeBudgetMs}", "--dump-dom", url], profile);
            bool exited = await chromium.WaitForExitAsync(TimeSpan.FromSeconds(90));
            Assert.True(exited, "chromium --dump-dom did not finish within 90 s:\n" + chromium.Output);
            return (chromium.Stdout, chromium.Stderr);
        }
        finally
        {
            TryDelete(profile);
        }
    }

    /// <summary>Starts Chromium with remote debugging and attaches to its first page.</summary>
    public static async Task<HeadlessChromium> LaunchAsync(int width = 1280, int height = 1600)
    {
        string profile = Directory.CreateTempSubdirectory("moeserve-chromium-").FullName;
        var devtools = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = ChildProcess.Start(Binary,
            [.. CommonFlags, $"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             $"--window-size={width},{height}", "about:blank"],
            profile,
            onStderrLine: line =>
            {
                const string marker = "DevTools listening on ";
                int at = line.IndexOf(marker, StringComparison.Ordinal);
                if (at >= 0) devtools.TrySetResult(line[(at + marker.Length)..].Trim());
            });
        var browser = new HeadlessChromium(process, profile);
        try
        {
            var ready = await Task.WhenAny(devtools.Task, Task.Delay(TimeSpan.FromSeconds(60)));
            Assert.True(ready == devtools.Task, "chromium printed no DevTools endpoint within 60 s:\n" + process.Output);
            var browserWs = new Uri(devtools.Task.Result);

            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            string? pageWs = null;
            var clock = Stopwatch.StartNew();
            while (pageWs is null && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                var targets = JsonNode.Parse(await http.GetStringAsync($"http://{browserWs.Authority}/json/list"))!.AsArray();
                pageWs = targets.FirstOrDefault(t => t!["type"]?.GetValue<string>() == "page")?["webSocketDebuggerUrl"]?.GetValue<string>();
                if (pageWs is null) await Task.Delay(100);
            }
            Assert.True(pageWs is not null, "chromium has no page target:\n" + process.Output);
            await browser._socket.ConnectAsync(new Uri(pageWs!), CancellationToken.None);
            return browser;
        }
        catch
        {
            await browser.DisposeAsync();
            throw;
        }
    }

    /// <summary>Sends one DevTools command and returns its result (events in between are skipped).</summary>
    public async Task<JsonNode> SendAsync(string method, JsonObject? parameters = null)
    {
        int id = Interlocked.Increment(ref _nextId);
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new JsonObject() };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, cts.Token);
        var buffer = new byte[64 * 1024];
        while (true)
        {
            using var received = new MemoryStream();
            WebSocketReceiveResult result;
            do
            {
                result = await _socket.ReceiveAsync(buffer, cts.Token);
                Assert.NotEqual(WebSocketMessageType.Close, result.MessageType);
                received.Write(buffer, 0, result.Count);
            } while (!result.EndOfMessage);
            var reply = JsonNode.Parse(received.ToArray())!;
            if (reply["id"]?.GetValue<int>() != id) continue;
            Assert.True(reply["error"] is null, $"{method}: {reply["error"]?.ToJsonString()}");
            return reply["result"]!;
        }
    }

    /// <summary>Evaluates a JavaScript expression in the page and returns its JSON value.</summary>
    public async Task<JsonNode?> EvaluateAsync(string expression)
    {
        var result = await SendAsync("Runtime.evaluate", new JsonObject
        {
            ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = true,
        });
        Assert.True(result["exceptionDetails"] is null, $"{expression}: {result["exceptionDetails"]?.ToJsonString()}");
        return result["result"]?["value"];
    }

    /// <summary>Polls a JavaScript condition until it is true.</summary>
    public async Task WaitForAsync(string condition, TimeSpan timeout, string what, string? diagnostic = null)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if ((await EvaluateAsync($"!!({condition})"))?.GetValue<bool>() == true) return;
            if (clock.Elapsed >= timeout)
            {
                string detail = diagnostic is null ? "" : "\n" + (await EvaluateAsync(diagnostic))?.ToJsonString();
                Assert.Fail($"timed out after {timeout.TotalSeconds}s waiting for {what}{detail}");
            }
            await Task.Delay(100);
        }
    }

    /// <summary>Clicks the centre of the first element matching <paramref name="selector"/> with real mouse events.</summary>
    public async Task ClickAsync(string selector)
    {
        var rect = await EvaluateAsync($$"""
            (() => {
              const e = document.querySelector({{JsonValue.Create(selector)!.ToJsonString()}});
              if (!e) return null;
              e.scrollIntoView({ block: 'center' });
              const r = e.getBoundingClientRect();
              return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
            })()
            """);
        Assert.True(rect is not null, $"nothing matches {selector}");
        foreach (var type in new[] { "mouseMoved", "mousePressed", "mouseReleased" })
            await SendAsync("Input.dispatchMouseEvent", new JsonObject
            {
                ["type"] = type, ["x"] = rect!["x"]!.GetValue<double>(), ["y"] = rect["y"]!.GetValue<double>(),
                ["button"] = type == "mouseMoved" ? "none" : "left", ["clickCount"] = type == "mouseMoved" ? 0 : 1,
            });
    }

    public async Task NavigateAsync(string url) => await SendAsync("Page.navigate", new JsonObject { ["url"] = url });

    public async Task<byte[]> ScreenshotAsync()
    {
        var result = await SendAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png", ["captureBeyondViewport"] = true });
        return Convert.FromBase64String(result["data"]!.GetValue<string>());
    }

    public async ValueTask DisposeAsync()
    {
        _socket.Dispose();
        await _process.DisposeAsync();
        TryDelete(_profile);
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
