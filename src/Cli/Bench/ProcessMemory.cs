namespace MoeServe.Cli.Bench;

/// <summary>
/// Resident-set figures of this process from /proc/self/status (Linux). libtorch allocates natively, so
/// the .NET GC counters do not see tensors; RSS does. All figures are process-wide.
/// </summary>
/// <remarks>
/// The kernel keeps one peak (VmHWM) per process; resetting it for a phase would lose the peak of the
/// row or of the whole run, so every reset first folds the old peak into those running maxima.
/// </remarks>
public static class ProcessMemory
{
    private static long _runPeak, _windowPeak;

    /// <summary>Whether the kernel lets this process reset its peak; without it phase deltas are meaningless.</summary>
    public static bool CanResetPeak { get; } = TryClearRefs();

    /// <summary>Current resident set (VmRSS) in bytes, or 0 where /proc is unavailable.</summary>
    public static long CurrentRss() => Read("VmRSS:");

    /// <summary>Peak resident set (VmHWM) since start or since the last <see cref="ResetPeak"/>.</summary>
    public static long PeakRss() => Read("VmHWM:");

    /// <summary>The highest peak over the whole run.</summary>
    public static long RunPeak() => Math.Max(_runPeak, PeakRss());

    /// <summary>Starts a window (e.g. one benchmark row) whose peak <see cref="WindowPeak"/> reports.</summary>
    public static void BeginWindow()
    {
        ResetPeak();
        _windowPeak = 0;
    }

    /// <summary>The highest peak since <see cref="BeginWindow"/>, across any phase resets in between.</summary>
    public static long WindowPeak() => Math.Max(_windowPeak, PeakRss());

    /// <summary>
    /// Sets VmHWM back to the current RSS (writes "5" to /proc/self/clear_refs, Linux 4.0+) so that the
    /// next <see cref="PeakRss"/> is the peak of the phase that follows, not of everything before it.
    /// </summary>
    public static void ResetPeak()
    {
        long peak = PeakRss();
        _runPeak = Math.Max(_runPeak, peak);
        _windowPeak = Math.Max(_windowPeak, peak);
        if (CanResetPeak) TryClearRefs();
    }

    private static bool TryClearRefs()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static long Read(string key)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return 0;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith(key, StringComparison.Ordinal)) continue;
            // "VmHWM:	  123456 kB"
            var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[0]) * 1024;
        }
        return 0;
    }
}
