using System.Diagnostics;
using System.Text;

namespace MoeServe.Integration.Tests.Infrastructure;

/// <summary>
/// A real child process whose stdout and stderr are captured line by line (for diagnostics and for
/// waiting on a line), killed with its whole tree on dispose.
/// </summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly StringBuilder _combined = new();
    private readonly object _gate = new();
    private readonly TaskCompletionSource _stdoutClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stderrClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public event Action<string>? StderrLine;

    private ChildProcess(Process process) => _process = process;

    public string Description { get; private init; } = "";
    public int Id => _process.Id;
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    public string Stdout { get { lock (_gate) return _stdout.ToString(); } }
    public string Stderr { get { lock (_gate) return _stderr.ToString(); } }

    /// <summary>stdout and stderr interleaved in arrival order, stderr lines marked.</summary>
    public string Output { get { lock (_gate) return _combined.ToString(); } }

    public static ChildProcess Start(string fileName, IEnumerable<string> args, string workingDirectory,
        IDictionary<string, string?>? environment = null, Action<string>? onStderrLine = null)
    {
        var psi = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (environment is not null)
            foreach (var (k, v) in environment)
            {
                if (v is null) psi.Environment.Remove(k);
                else psi.Environment[k] = v;
            }

        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var child = new ChildProcess(process) { Description = fileName + " " + string.Join(" ", args) };
        if (onStderrLine is not null) child.StderrLine += onStderrLine;
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) { child._stdoutClosed.TrySetResult(); return; }
            lock (child._gate) { child._stdout.AppendLine(e.Data); child._combined.AppendLine(e.Data); }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) { child._stderrClosed.TrySetResult(); return; }
            lock (child._gate) { child._stderr.AppendLine(e.Data); child._combined.Append("[stderr] ").AppendLine(e.Data); }
            child.StderrLine?.Invoke(e.Data);
        };
        if (!process.Start()) throw new InvalidOperationException("could not start " + child.Description);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Waits for the process to exit; false if it is still running after <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        // Let the asynchronous readers drain what the process wrote last.
        await Task.WhenAny(Task.WhenAll(_stdoutClosed.Task, _stderrClosed.Task), Task.Delay(TimeSpan.FromSeconds(5)));
        return true;
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    private int _disposed;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        Kill();
        await WaitForExitAsync(TimeSpan.FromSeconds(15));
        _process.Dispose();
    }
}
