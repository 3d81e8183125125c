using MoeServe.Routing;
using System.CommandLine;
using System.Diagnostics;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Cli.Bench;

/// <summary>
/// `moeserve-cli bench`: prefill and decode throughput, decode step latency and memory of a checkpoint,
/// per compute dtype and batch size, printed as a Markdown table.
/// </summary>
public static class BenchCommand
{
    private const string DefaultModel = "models/moeserve-moe-tiny";

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = $"Checkpoint folder (default: {DefaultModel} under the repository root)" };
        var dtypes = new Option<string>("--dtypes") { Description = "Comma-separated compute dtypes", DefaultValueFactory = _ => "float32,bfloat16" };
        var prompt = new Option<int>("--prompt-tokens") { Description = "Prompt length P", DefaultValueFactory = _ => 256 };
        var decode = new Option<int>("--decode-tokens") { Description = "Greedy decode steps D after the prompt", DefaultValueFactory = _ => 128 };
        var batch = new Option<string>("--batch") { Description = "Comma-separated batch sizes (sequences decoding together in one flat batch), e.g. 1,8", DefaultValueFactory = _ => "1" };
        var repeats = new Option<int>("--repeats") { Description = "Measured passes per row (after one warm-up pass)", DefaultValueFactory = _ => 5 };
        var threads = new Option<int?>("--threads") { Description = "libtorch intra-op threads (default: libtorch's choice)" };
        var policies = new Option<string>("--policies") { Description = "Comma-separated routing policies, each row run under each (capacity factor 1.0)", DefaultValueFactory = _ => "vanilla" };
        var applyToDecode = new Option<bool>("--apply-to-decode") { Description = "Enforce capacity on decode steps too (Routing:ApplyToDecode)" };
        var expertDtype = new Option<string>("--expert-dtype") { Description = "Dtype of the expert weights and products, as Model:ExpertDtype: auto, float32, bfloat16 or float16", DefaultValueFactory = _ => ExpertPrecision.Auto };
        var markdown = new Option<string?>("--markdown") { Description = "Also write the report to this Markdown file" };

        var command = new Command("bench", "Measure prefill/decode speed and memory of a model per compute dtype")
        {
            model, dtypes, prompt, decode, batch, repeats, threads, policies, applyToDecode, expertDtype, markdown,
        };
        command.SetAction(result =>
        {
            BenchSettings settings;
            try
            {
                settings = new BenchSettings
                {
                    ModelDir = Path.GetFullPath(result.GetValue(model) ?? RepositoryRoot.Resolve(DefaultModel)),
                    Dtypes = SplitList(result.GetValue(dtypes)!).Select(BenchSettings.ParseDtype).Distinct().ToArray(),
                    Batches = SplitList(result.GetValue(batch)!).Select(ParsePositive).Distinct().ToArray(),
                    Policies = SplitList(result.GetValue(policies)!).Select(ParsePolicy).Distinct().ToArray(),
                    ApplyToDecode = result.GetValue(applyToDecode),
                    PromptTokens = Positive(result.GetValue(prompt), "--prompt-tokens"),
                    DecodeTokens = Positive(result.GetValue(decode), "--decode-tokens"),
                    Repeats = Positive(result.GetValue(repeats), "--repeats"),
                    Threads = result.GetValue(threads) is int t ? Positive(t, "--threads") : null,
                    MarkdownFile = result.GetValue(markdown),
                    ExpertDtype = result.GetValue(expertDtype)!,
                };
            }
            catch (Exception e) when (e is ArgumentException or FormatException or DirectoryNotFoundException)
            {
                Console.Error.WriteLine($"bench: {e.Message}");
                return 2;
            }
            return Run(settings);
        });
        return command;
    }

    private static int Run(BenchSettings settings)
    {
        ModelConfig config;
        try
        {
            config = ModelConfig.Load(settings.ModelDir);
        }
        catch (CheckpointException e)
        {
            Console.Error.WriteLine($"bench: {e.Message}");
            return 1;
        }
        if (settings.PromptTokens + settings.DecodeTokens > config.MaxPositionEmbeddings)
        {
            Console.Error.WriteLine($"bench: prompt + decode = {settings.PromptTokens + settings.DecodeTokens} tokens exceeds max_position_embeddings {config.MaxPositionEmbeddings}");
            return 2;
        }

        if (settings.Threads is int n) torch.set_num_threads(n);
        // Same as the engine thread: no autograd bookkeeping on any tensor this thread makes.
        using var inference = torch.inference_mode();
        var machine = MachineInfo.Collect();
        // Collect() has loaded libtorch: what the process holds before any weights, to read peak RSS against.
        long baselineRss = ProcessMemory.CurrentRss();

        var rows = new List<BenchRow>();
        foreach (var dtype in settings.Dtypes)
        {
            Console.Error.WriteLine($"bench: loading {BenchSettings.DtypeName(dtype)} ...");
            long start = Stopwatch.GetTimestamp();
            ScalarType experts;
            try
            {
                experts = ExpertPrecision.Resolve(settings.ExpertDtype, config, dtype, torch.CPU);
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"bench: --expert-dtype: {e.Message}");
                return 2;
            }
            using var loaded = MoeForCausalLM.Load(settings.ModelDir, dtype, torch.CPU, expertDtype: experts);
            double loadSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            foreach (int b in settings.Batches)
                foreach (var policy in settings.Policies)
                {
                    Console.Error.WriteLine($"bench: {BenchSettings.DtypeName(dtype)} batch {b} {policy.ToWireName()}: warm-up + {settings.Repeats} passes ...");
                    rows.Add(new BenchRunner(loaded, settings, policy).Run(b, loadSeconds));
                }
        }

        string report = BenchReport.Format(settings, config, machine, rows, baselineRss, ProcessMemory.RunPeak());
        Console.WriteLine(report);
        if (settings.MarkdownFile is string file) ReportFiles.WriteText("bench", file, report);
        return 0;
    }

    private static IEnumerable<string> SplitList(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static RoutingPolicy ParsePolicy(string text) =>
        RoutingPolicyNames.TryParse(text, out var p) ? p : throw new ArgumentException($"unknown policy '{text}' (use {string.Join(", ", RoutingPolicyNames.All)})");

    private static int ParsePositive(string text) =>
        int.TryParse(text, out int v) && v > 0 ? v : throw new ArgumentException($"'{text}' is not a positive integer");

    private static int Positive(int value, string option) =>
        value > 0 ? value : throw new ArgumentException($"{option} must be positive (got {value})");
}
