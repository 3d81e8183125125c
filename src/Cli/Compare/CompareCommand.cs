using System.CommandLine;
using MoeServe.Cli.Eval;
using MoeServe.Inference.Checkpoint;

namespace MoeServe.Cli.Compare;

/// <summary>
/// `moeserve-cli compare`: the fixed list of routing configurations (<see cref="CompareConfigurations"/>)
/// on the same held-out inputs, balance and quality side by side in one Markdown table, with a balance
/// vs quality SVG and a JSON file of every number on request.
/// </summary>
public static class CompareCommand
{
    private const string DefaultModel = "models/moeserve-tiny-random";
    private const string DefaultData = "data";

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = $"Checkpoint folder (default: {DefaultModel} under the repository root)" };
        var data = new Option<string?>("--data") { Description = $"Data folder as docs/training-data-format.md describes (default: {DefaultData} under the repository root)" };
        var maxDocs = new Option<int>("--max-docs") { Description = "Held-out documents per domain and task items per family (0 = all)", DefaultValueFactory = _ => EvalSettings.DefaultMaxDocs };
        // The batch size sets T and with it every capacity C = ceil(gamma k T / E): part of what is compared.
        var batchDocs = new Option<int>("--batch-docs") { Description = "Documents per forward pass (one flat batch)", DefaultValueFactory = _ => 8 };
        var routingCalls = new Option<int>("--routing-calls") { Description = "Timed LayerRouter.Route calls per configuration and batch size", DefaultValueFactory = _ => 200 };
        // One thread by default, like eval and the server: libtorch's spinning workers slow small passes on a shared CPU.
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0 = libtorch's choice)", DefaultValueFactory = _ => 1 };
        var markdown = new Option<string?>("--markdown") { Description = "Also write the report to this Markdown file" };
        var plot = new Option<string?>("--plot") { Description = "Write the balance (I_agg) vs perplexity plot to this SVG file" };
        var json = new Option<string?>("--json") { Description = "Write every number to this JSON file" };

        var command = new Command("compare", "Balance and quality of the routing policies side by side on the same held-out inputs")
        {
            model, data, maxDocs, batchDocs, routingCalls, threads, markdown, plot, json,
        };
        command.SetAction(result =>
        {
            EvalSettings settings;
            int calls;
            try
            {
                int docs = result.GetValue(maxDocs);
                if (docs < 0) throw new ArgumentException("--max-docs must be 0 (all) or positive");
                calls = Positive(result.GetValue(routingCalls), "--routing-calls");
                settings = new EvalSettings
                {
                    ModelDir = Path.GetFullPath(result.GetValue(model) ?? RepositoryRoot.Resolve(DefaultModel)),
                    DataDir = Path.GetFullPath(result.GetValue(data) ?? RepositoryRoot.Resolve(DefaultData)),
                    MaxDocs = docs == 0 ? null : docs,
                    BatchDocs = Positive(result.GetValue(batchDocs), "--batch-docs"),
                    Threads = result.GetValue(threads) is > 0 and var n ? n : null,
                    Log = line => Console.Error.WriteLine($"compare: {line}"),
                };
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"compare: {e.Message}");
                return 2;
            }
            return Run(new CompareRunner(settings, calls), result.GetValue(markdown), result.GetValue(plot), result.GetValue(json));
        });
        return command;
    }

    private static int Run(CompareRunner runner, string? markdownFile, string? plotFile, string? jsonFile)
    {
        CompareReport report;
        try
        {
            report = runner.Run();
        }
        catch (Exception e) when (e is CheckpointException or DirectoryNotFoundException or FileNotFoundException or InvalidDataException or NotSupportedException)
        {
            Console.Error.WriteLine($"compare: {e.Message}");
            return 1;
        }
        string table = CompareTable.Format(report);
        Console.WriteLine(table);
        if (markdownFile is not null) ReportFiles.WriteText("compare", markdownFile, table);
        if (plotFile is not null)
        {
            ComparePlot.WriteSvg(report, plotFile);
            Console.Error.WriteLine($"compare: wrote {plotFile}");
        }
        if (jsonFile is not null)
        {
            CompareJson.Write(report, jsonFile);
            Console.Error.WriteLine($"compare: wrote {jsonFile}");
        }
        return 0;
    }

    private static int Positive(int value, string option) =>
        value > 0 ? value : throw new ArgumentException($"{option} must be positive (got {value})");
}
