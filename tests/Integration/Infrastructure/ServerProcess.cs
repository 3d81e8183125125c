using System.Diagnostics;

namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>What a server run that was expected to stop by itself left behind.</summary>
public sealed record ExitResult(bool Exited, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public override string ToString() =>
        $"exited={Exited} exit code={(Exited ? ExitCode.ToString() : "-")} after {Elapsed.TotalSeconds:F1}s\n--- stderr ---\n{Stderr}\n--- stdout ---\n{Stdout}";
}

/// <summary>
/// The real MoeServe server as a child process: <c>dotnet MoeServe.Api.dll --urls http://127.0.0.1:PORT [args]</c>
/// with the repository root as working directory, ready once GET /health answers 200.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    private readonly ChildProcess _child;
    private readonly string _name;

    private ServerProcess(ChildProcess child, string name, int port)
    {
        _child = child;
        _name = name;
        Port = port;
    }

    public int Port { get; }
    public string BaseUrl => $"http://127.0.0.1:{Port}";
    public Uri BaseUri => new(BaseUrl);
    public bool HasExited => _child.HasExited;

    /// <summary>Everything the server printed so far (for assertion messages).</summary>
    public string Logs => _child.Output;

    private static ChildProcess Launch(int port, IEnumerable<string> extraArgs) =>
        ChildProcess.Start(RepoPaths.DotnetHost,
            // The tests pin the small random model (whatever the configured default); later arguments override.
            new[] { RepoPaths.ServerDll, "--urls", $"http://127.0.0.1:{port}", $"--Model:Path={RepoPaths.ModelDir}" }.Concat(extraArgs),
            RepoPaths.Root,
            new Dictionary<string, string?>
            {
                // Nothing from the test host's environment may move or reconfigure the server.
                ["ASPNETCORE_URLS"] = null,
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["DOTNET_ENVIRONMENT"] = null,
            });

    /// <summary>Starts a server and waits until GET /health is 200; throws with the server's output otherwise.</summary>
    public static async Task<ServerProcess> StartAsync(string name, params string[] extraArgs)
    {
        int port = RepoPaths.FreeTcpPort();
        var server = new ServerProcess(Launch(port, extraArgs), name, port);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < ReadyTimeout)
        {
            if (server._child.HasExited)
            {
                await server._child.WaitForExitAsync(TimeSpan.FromSeconds(5));
                string logs = server.Logs;
                await server.DisposeAsync();
                throw new InvalidOperationException($"server '{name}' exited with code {server._child.ExitCode} before it was ready:\n{logs}");
            }
            try
            {
                using var response = await http.GetAsync(server.BaseUrl + "/health");
                if ((int)response.StatusCode == 200) return server;
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException)
            {
                // Slow to answer while starting.
            }
            await Task.Delay(100);
        }
        string output = server.Logs;
        await server.DisposeAsync();
        throw new TimeoutException($"server '{name}' not ready (GET /health != 200) within {ReadyTimeout.TotalSeconds}s:\n{output}");
    }

    /// <summary>Runs a server that is expected to stop by itself (bad configuration): its exit code and output.</summary>
    public static async Task<ExitResult> RunToExitAsync(TimeSpan timeout, params string[] extraArgs)
    {
        var clock = Stopwatch.StartNew();
        await using var child = Launch(RepoPaths.FreeTcpPort(), extraArgs);
        bool exited = await child.WaitForExitAsync(timeout);
        if (!exited) child.Kill();
        return new ExitResult(exited, exited ? child.ExitCode : -1, child.Stdout, child.Stderr, clock.Elapsed);
    }

    public async ValueTask DisposeAsync()
    {
        await _child.DisposeAsync();
        try
        {
            File.WriteAllText(Path.Combine(RepoPaths.ArtifactsDir, $"server-{_name}-{Port}.log"), _child.Output);
        }
        catch (IOException)
        {
            // Diagnostics only.
        }
    }
}
