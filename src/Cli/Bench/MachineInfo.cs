using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;

namespace MoeServe.Cli.Bench;

/// <summary>What the numbers depend on: CPU, thread counts, library versions.</summary>
public sealed record MachineInfo(
    int LogicalCores, string CpuModel, string Os, string Runtime,
    int TorchThreads, int TorchInteropThreads, string TorchSharpVersion, string LibTorchVersion)
{
    /// <summary>Reads the facts now; call after the thread count has been set.</summary>
    public static MachineInfo Collect() => new(
        Environment.ProcessorCount,
        ReadCpuModel(),
        RuntimeInformation.OSDescription,
        RuntimeInformation.FrameworkDescription,
        torch.get_num_threads(),
        torch.get_num_interop_threads(),
        typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "?",
        // Baked in at build time by Cli.csproj: the libtorch package this binary was built against.
        typeof(MachineInfo).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "LibTorchPackageVersion")?.Value ?? "unknown");

    private static string ReadCpuModel()
    {
        const string path = "/proc/cpuinfo";
        if (!File.Exists(path)) return RuntimeInformation.ProcessArchitecture.ToString();
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
        return line is null ? RuntimeInformation.ProcessArchitecture.ToString() : line[(line.IndexOf(':') + 1)..].Trim();
    }
}
