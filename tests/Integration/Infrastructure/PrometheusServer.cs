using System.Diagnostics;
using System.Text.Json.Nodes;

namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>
/// A real Prometheus scraping the given targets every second, in its own temp folder (config and TSDB), on a
/// free port; killed and its folder deleted on dispose.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    public const string Binary = "/usr/bin/prometheus";

    private readonly ChildProcess _process;
    private readonly string _dir;
    private readonly HttpClient _http;

    private PrometheusServer(ChildProcess process, string dir, int port)
    {
        _process = process;
        _dir = dir;
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>Prometheus's stdout and stderr, for failure messages.</summary>
    public string Output => _process.Output;

    /// <summary>Starts Prometheus with one scrape job over <paramref name="targets"/> ("host:port") and waits until it is ready.</summary>
    public static async Task<PrometheusServer> StartAsync(string job, params string[] targets)
    {
        string dir = Directory.CreateTempSubdirectory("moeserve-prometheus-").FullName;
        int port = RepoPaths.FreeTcpPort();
        string config = Path.Combine(dir, "prometheus.yml");
        // 1 s scrape and evaluation intervals: tests wait for scrapes, and rate() needs a few samples.
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: {job}
                metrics_path: /metrics
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(t => $"'{t}'"))}]
            """);

        var process = ChildProcess.Start(Binary,
        [
            $"--config.file={config}",
            $"--storage.tsdb.path={Path.Combine(dir, "data")}",
            $"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ], dir);
        var prometheus = new PrometheusServer(process, dir, port);
        try
        {
            await prometheus.WaitReadyAsync();
            return prometheus;
        }
        catch
        {
            // The caller never gets the instance, so nothing else would stop the process or delete the folder.
            await prometheus.DisposeAsync();
            throw;
        }
    }

    private async Task WaitReadyAsync()
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            Assert.False(_process.HasExited, "prometheus exited:\n" + Output);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "prometheus not ready within 30 s:\n" + Output);
            try
            {
                using var ready = await _http.GetAsync("/-/ready");
                if (ready.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            await Task.Delay(200);
        }
    }

    /// <summary>An instant query; asserts that Prometheus answered with success and returns data.result.</summary>
    public async Task<JsonArray> QueryAsync(string promql)
    {
        using var response = await _http.GetAsync("/api/v1/query?query=" + Uri.EscapeDataString(promql));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{promql}: {text}");
        var json = JsonNode.Parse(text)!;
        Assert.Equal("success", HttpApi.Text(json["status"]));
        return json["data"]!["result"]!.AsArray();
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _process.DisposeAsync();
        try { Directory.Delete(_dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
