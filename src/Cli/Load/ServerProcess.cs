using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace MoeServe.Cli.Load;

/// <summary>
/// Builds and starts the MoeServe server (Release) on a free loopback port and stops it afterwards. The
/// server dll runs directly (not under `dotnet run`) so that its own memory can be read.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;

    public Uri BaseAddress { get; }

    private ServerProcess(Process process, Uri baseAddress)
    {
        _process = process;
        BaseAddress = baseAddress;
    }

    public static async Task<ServerProcess> StartAsync(string repositoryRoot, IEnumerable<string> extraArgs, TimeSpan timeout)
    {
        using (var build = Process.Start(new ProcessStartInfo("dotnet", ["build", "src/Api", "-c", "Release", "-nologo", "-v", "q"])
               { WorkingDirectory = repositoryRoot }) ?? throw new InvalidOperationException("could not start dotnet build"))
        {
            await build.WaitForExitAsync();
            if (build.ExitCode != 0) throw new InvalidOperationException("building src/Api failed");
        }
        int port = FreePort();
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = repositoryRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[] { Path.Combine("src", "Api", "bin", "Release", "net10.0", "MoeServe.Api.dll"), "--urls", $"http://127.0.0.1:{port}" }.Concat(extraArgs))
            info.ArgumentList.Add(a);
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start dotnet");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine($"[server] {e.Data}"); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new ServerProcess(process, new Uri($"http://127.0.0.1:{port}/"));
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited) throw new InvalidOperationException($"the server exited with code {process.ExitCode}");
            try
            {
                if ((await http.GetAsync("health")).IsSuccessStatusCode) return server;
            }
            catch (HttpRequestException) { }
            await Task.Delay(250);
        }
        await server.DisposeAsync();
        throw new TimeoutException("the server did not become healthy in time");
    }

    /// <summary>Resident memory of the server process (MiB), for the flat-memory check of soak runs.</summary>
    public double ResidentMiB()
    {
        _process.Refresh();
        return _process.WorkingSet64 / (1024.0 * 1024.0);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
