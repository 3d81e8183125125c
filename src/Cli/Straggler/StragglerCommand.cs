using System.CommandLine;
using MoeServe.Inference.Checkpoint;

namespace MoeServe.Cli.Straggler;

/// <summary>
/// `moeserve-cli straggler`: the shipped model's MoE layers on 2, 4 and 8 virtual devices under each routing
/// policy: measured wall time, modelled expert-parallel latency and a synthetic cost model, as a Markdown
/// table and an SVG plot.
/// </summary>
public static class StragglerCommand
{
    private const string DefaultModel = "models/moeserve-moe-tiny";
    private const string DefaultData = "data";

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = $"Checkpoint folder (default: {DefaultModel} under the repository root)" };
        var data = new Option<string?>("--data") { Description = $"Data folder with heldout/*.jsonl (default: {DefaultData} under the repository root)" };
        var devices = new Option<string>("--devices") { Description = "Comma-separated virtual device counts", DefaultValueFactory = _ => "2,4,8" };
        var windowTokens = new Option<int>("--window-tokens") { Description = "Tokens per sequence of a batch", DefaultValueFactory = _ => 64 };
        var batchWindows = new Option<int>("--batch-windows") { Description = "Sequences per batch (T = window tokens x batch windows)", DefaultValueFactory = _ => 8 };
        var batches = new Option<int>("--batches") { Description = "Measured batches (as many more calibrate the load-aware placement)", DefaultValueFactory = _ => 8 };
        var repeats = new Option<int>("--repeats") { Description = "Passes over the batches per configuration; times are medians over them", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads per device worker (0 = libtorch's choice)", DefaultValueFactory = _ => 1 };
        var markdown = new Option<string?>("--markdown") { Description = "Also write the table to this Markdown file" };
        var plot = new Option<string?>("--plot") { Description = "Write the speedup plot to this SVG file" };

        var command = new Command("straggler", "Expert-parallel straggler benchmark: routing policies on 2/4/8 virtual devices")
        {
            model, data, devices, windowTokens, batchWindows, batches, repeats, threads, markdown, plot,
        };
        command.SetAction(result =>
        {
            StragglerSettings settings;
            try
            {
                settings = new StragglerSettings
                {
                    ModelDir = Path.GetFullPath(result.GetValue(model) ?? RepositoryRoot.Resolve(DefaultModel)),
                    DataDir = Path.GetFullPath(result.GetValue(data) ?? RepositoryRoot.Resolve(DefaultData)),
                    DeviceCounts = ParseCounts(result.GetValue(devices)!),
                    WindowTokens = Positive(result.GetValue(windowTokens), "--window-tokens"),
                    BatchWindows = Positive(result.GetValue(batchWindows), "--batch-windows"),
                    Batches = Positive(result.GetValue(batches), "--batches"),
                    Repeats = Positive(result.GetValue(repeats), "--repeats"),
                    Threads = result.GetValue(threads) is > 0 and var n ? n : null,
                    Log = line => Console.Error.WriteLine($"straggler: {line}"),
                };
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"straggler: {e.Message}");
                return 2;
            }
            StragglerReport report;
            try
            {
                report = new StragglerRunner(settings).Run();
            }
            catch (Exception e) when (e is CheckpointException or DirectoryNotFoundException or FileNotFoundException or InvalidDataException or ArgumentException)
            {
                Console.Error.WriteLine($"straggler: {e.Message}");
                return 1;
            }
            string table = StragglerTable.Format(report);
            Console.WriteLine(table);
            if (result.GetValue(markdown) is string md) ReportFiles.WriteText("straggler", md, table);
            if (result.GetValue(plot) is string svg)
            {
                StragglerPlot.WriteSvg(report, svg);
                Console.Error.WriteLine($"straggler: wrote {svg}");
            }
            return 0;
        });
        return command;
    }

    private static List<int> ParseCounts(string text) => text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
        .Select(t => int.TryParse(t, out int n) && n >= 1 ? n : throw new ArgumentException($"--devices: '{t}' is not a positive count"))
        .ToList() is { Count: > 0 } list ? list : throw new ArgumentException("--devices lists no count");

    private static int Positive(int value, string option) =>
        value > 0 ? value : throw new ArgumentException($"{option} must be positive (got {value})");
}
