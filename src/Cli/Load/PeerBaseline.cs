using System.Diagnostics;
using System.Text.Json;

namespace MoeServe.Cli.Load;

/// <summary>The PyTorch eager peer's figures (scripts/peer/eager_generate.py).</summary>
public sealed record PeerResult(string Description, double DecodeTokensPerSecond, double OutputTokensPerSecond);

/// <summary>Runs the plain PyTorch eager implementation on the same checkpoint and prompts, one prompt at a time.</summary>
public static class PeerBaseline
{
    public const string Python = "/usr/bin/python3";

    public static async Task<PeerResult?> RunAsync(string repositoryRoot, string modelDir, IReadOnlyList<int[]> prompts, int maxTokens, int? threads)
    {
        if (!File.Exists(Python))
        {
            Console.Error.WriteLine("peer: /usr/bin/python3 not found; skipping the PyTorch baseline");
            return null;
        }
        string promptsFile = Path.GetTempFileName();
        await File.WriteAllTextAsync(promptsFile, JsonSerializer.Serialize(new { prompts }));
        var info = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = repositoryRoot };
        foreach (var a in new[] { "scripts/peer/eager_generate.py", "--model", modelDir, "--prompts-file", promptsFile, "--max-tokens", maxTokens.ToString() })
            info.ArgumentList.Add(a);
        if (threads is int t) { info.ArgumentList.Add("--threads"); info.ArgumentList.Add(t.ToString()); }
        using var process = Process.Start(info)!;
        string stdout = await process.StandardOutput.ReadToEndAsync();
        string stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        File.Delete(promptsFile);
        if (process.ExitCode != 0)
        {
            Console.Error.WriteLine($"peer: failed ({process.ExitCode}): {stderr.Trim()}");
            return null;
        }
        using var doc = JsonDocument.Parse(stdout);
        var r = doc.RootElement;
        return new PeerResult($"torch {r.GetProperty("torch_version").GetString()}, {r.GetProperty("threads").GetInt32()} threads, {r.GetProperty("dtype").GetString()}",
            r.GetProperty("decode_tokens_per_s").GetDouble(), r.GetProperty("output_tokens_per_s").GetDouble());
    }
}
