using System.Diagnostics;

namespace MoeServe.Cli.Bench;

/// <summary>
/// How much of the machine other processes used over an interval: /proc/stat's busy share minus this
/// process's own CPU time. On a small shared machine a descheduled libtorch worker stalls every
/// parallel region, so a few percent of foreign load already shows in the tail latencies.
/// </summary>
public sealed class CpuContention
{
    private readonly (long Busy, long Total)? _machineStart = ReadMachine();
    private readonly TimeSpan _ownStart = Process.GetCurrentProcess().TotalProcessorTime;
    private readonly long _wallStart = Stopwatch.GetTimestamp();

    /// <summary>Percent of all cores used by other processes since construction, or null off Linux.</summary>
    public double? OthersPercent()
    {
        var end = ReadMachine();
        if (_machineStart is not { } start || end is not { } stop || stop.Total == start.Total) return null;
        double machineBusy = (double)(stop.Busy - start.Busy) / (stop.Total - start.Total);
        double wall = Stopwatch.GetElapsedTime(_wallStart).TotalSeconds;
        double own = (Process.GetCurrentProcess().TotalProcessorTime - _ownStart).TotalSeconds / (wall * Environment.ProcessorCount);
        return Math.Max(0, machineBusy - own) * 100;
    }

    /// <summary>Busy and total jiffies of all CPUs ("cpu" line: user nice system idle iowait irq softirq steal ...).</summary>
    private static (long Busy, long Total)? ReadMachine()
    {
        const string path = "/proc/stat";
        if (!File.Exists(path)) return null;
        var fields = File.ReadLines(path).First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8).Select(long.Parse).ToArray();
        long total = fields.Sum(), idle = fields[3] + fields[4];
        return (total - idle, total);
    }
}
