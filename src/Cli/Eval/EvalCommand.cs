using System.CommandLine;
using MoeServe.Cli.Bench;
using MoeServe.Inference.Checkpoint;
using MoeServe.Routing;

namespace MoeServe.Cli.Eval;

/// <summary>
/// `moeserve-cli eval`: held-out perplexity per domain (with a unigram baseline), exact-match task
/// accuracy, and expert load balance of one model under one routing policy, through the server's own
/// model and engine code; prints Markdown, optionally writes it, a JSON file and a heatmap SVG.
/// </summary>
public static class EvalCommand
{
    private const string DefaultModel = "models/moeserve-tiny-random";
    private const string DefaultData = "data";

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = $"Checkpoint folder (default: {DefaultModel} under the repository root)" };
        var data = new Option<string?>("--data") { Description = $"Data folder as docs/training-data-format.md describes (default: {DefaultData} under the repository root)" };
        var policy = new Option<string>("--policy") { Description = $"Routing policy: {string.Join(", ", RoutingPolicyNames.All)}", DefaultValueFactory = _ => "vanilla" };
        var capacity = new Option<double>("--capacity-factor") { Description = "Capacity factor gamma of capacity-aware policies", DefaultValueFactory = _ => 1.0 };
        var maxDocs = new Option<int>("--max-docs") { Description = "Held-out documents per domain and task items per family (0 = all)", DefaultValueFactory = _ => EvalSettings.DefaultMaxDocs };
        var batchDocs = new Option<int>("--batch-docs") { Description = "Documents per forward pass (one flat batch)", DefaultValueFactory = _ => 8 };
        var batchTokens = new Option<int>("--max-batch-tokens") { Description = "Most tokens per forward pass (at least the context)", DefaultValueFactory = _ => 8192 };
        var context = new Option<int?>("--context") { Description = "Cut documents to this many tokens (default: max_position_embeddings)" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Greedy tokens per task reply", DefaultValueFactory = _ => 32 };
        var dtype = new Option<string>("--dtype") { Description = "Compute dtype: float32 or bfloat16", DefaultValueFactory = _ => "float32" };
        var expertDtype = new Option<string?>("--expert-dtype") { Description = "Dtype of the expert weights and products: float32, bfloat16 or float16 (float16 on CPU: FBGEMM products with float32 rows; default: --dtype)" };
        // One thread like the server's appsettings.json (Engine:TorchThreads): on a shared CPU, libtorch's
        // spinning worker threads slow small forward passes several-fold.
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0 = libtorch's choice)", DefaultValueFactory = _ => 1 };
        var device = new Option<string>("--device") { Description = "Torch device (cpu, cuda)", DefaultValueFactory = _ => "cpu" };
        var markdown = new Option<string?>("--markdown") { Description = "Also write the report to this Markdown file" };
        var heatmap = new Option<string?>("--heatmap") { Description = "Write the layer x expert load heatmaps (one panel per domain) to this SVG file" };
        var json = new Option<string?>("--json") { Description = "Write every number to this JSON file" };
        var laserPool = new Option<int?>("--laser-pool") { Description = "LASER candidate pool size c (default k + 1)" };
        var laserEpsHigh = new Option<double>("--laser-eps-high") { Description = "LASER: top-k mass at or above which a token routes as vanilla", DefaultValueFactory = _ => 0.9 };

        var command = new Command("eval", "Perplexity, task accuracy and expert load balance of a model under a routing policy")
        {
            model, data, policy, capacity, maxDocs, batchDocs, batchTokens, context, maxTokens, dtype, expertDtype, threads, device, markdown, heatmap, json,
            laserPool, laserEpsHigh,
        };
        command.SetAction(result =>
        {
            EvalSettings settings;
            try
            {
                if (!RoutingPolicyNames.TryParse(result.GetValue(policy), out var routing))
                    throw new ArgumentException($"unknown --policy '{result.GetValue(policy)}' (use {string.Join(", ", RoutingPolicyNames.All)})");
                int docs = result.GetValue(maxDocs);
                if (docs < 0) throw new ArgumentException("--max-docs must be 0 (all) or positive");
                settings = new EvalSettings
                {
                    ModelDir = Path.GetFullPath(result.GetValue(model) ?? RepositoryRoot.Resolve(DefaultModel)),
                    DataDir = Path.GetFullPath(result.GetValue(data) ?? RepositoryRoot.Resolve(DefaultData)),
                    Policy = routing,
                    CapacityFactor = result.GetValue(capacity) is > 0 and var gamma ? gamma : throw new ArgumentException("--capacity-factor must be positive"),
                    MaxDocs = docs == 0 ? null : docs,
                    BatchDocs = Positive(result.GetValue(batchDocs), "--batch-docs"),
                    MaxBatchTokens = Positive(result.GetValue(batchTokens), "--max-batch-tokens"),
                    ContextTokens = result.GetValue(context) is int c ? Positive(c, "--context") : null,
                    MaxNewTokens = Positive(result.GetValue(maxTokens), "--max-tokens"),
                    Dtype = BenchSettings.ParseDtype(result.GetValue(dtype)!),
                    ExpertDtype = result.GetValue(expertDtype) is { } experts ? BenchSettings.ParseDtype(experts) : null,
                    Threads = result.GetValue(threads) is > 0 and var n ? n : null,
                    Device = result.GetValue(device)!,
                    Log = line => Console.Error.WriteLine($"eval: {line}"),
                    Routing = RoutingConfig.Default with
                    {
                        Laser = new LaserParameters(
                            result.GetValue(laserPool) is int pool ? Positive(pool, "--laser-pool") : null,
                            result.GetValue(laserEpsHigh) is > 0 and <= 1 and var eps ? eps : throw new ArgumentException("--laser-eps-high must be in (0, 1]")),
                    },
                };
            }
            catch (Exception e) when (e is ArgumentException or DirectoryNotFoundException)
            {
                Console.Error.WriteLine($"eval: {e.Message}");
                return 2;
            }
            return Run(settings, result.GetValue(markdown), result.GetValue(heatmap), result.GetValue(json));
        });
        return command;
    }

    private static int Run(EvalSettings settings, string? markdownFile, string? heatmapFile, string? jsonFile)
    {
        EvalResult result;
        try
        {
            result = new Evaluator().Evaluate(settings);
        }
        catch (Exception e) when (e is CheckpointException or DirectoryNotFoundException or InvalidDataException or NotSupportedException)
        {
            Console.Error.WriteLine($"eval: {e.Message}");
            return 1;
        }
        string report = EvalReport.Format(result);
        Console.WriteLine(report);
        if (markdownFile is not null) ReportFiles.WriteText("eval", markdownFile, report);
        if (jsonFile is not null)
        {
            EvalJson.Write(result, jsonFile);
            Console.Error.WriteLine($"eval: wrote {jsonFile}");
        }
        if (heatmapFile is not null)
        {
            LoadHeatmap.WriteSvg(result, heatmapFile);
            Console.Error.WriteLine($"eval: wrote {heatmapFile}");
        }
        return 0;
    }

    private static int Positive(int value, string option) =>
        value > 0 ? value : throw new ArgumentException($"{option} must be positive (got {value})");
}
