using System.CommandLine;
using System.Globalization;
using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Tokenization;

namespace MoeServe.Cli.Load;

/// <summary>
/// `moeserve-cli load`: drives the OpenAI endpoint over HTTP with a concurrency sweep and prints, per level,
/// requests/s, output tokens/s, TTFT, end-to-end and inter-token latency percentiles and errors; writes
/// the table as Markdown and an SVG plot; runs the PyTorch eager peer on the same prompts for a ratio.
/// With --soak-seconds it then holds the highest concurrency and reports the server's memory over time.
/// </summary>
public static class LoadCommand
{
    private const string DefaultModel = "models/moeserve-moe-tiny"; // the server's default: the shipped model

    public static Command Create()
    {
        var url = new Option<string?>("--url") { Description = "A running server (default: build and start one on a free port)" };
        var model = new Option<string?>("--model") { Description = $"Checkpoint folder served and given to the peer (default: {DefaultModel})" };
        var levels = new Option<string>("--concurrency") { Description = "Comma-separated concurrency levels", DefaultValueFactory = _ => "1,4,16,64" };
        var seconds = new Option<double>("--seconds") { Description = "Seconds per level and round", DefaultValueFactory = _ => 10 };
        var rounds = new Option<int>("--rounds") { Description = "Times the sweep (and the peer) is repeated, interleaved: ratios are taken per round and their median reported", DefaultValueFactory = _ => 3 };
        var promptTokens = new Option<int>("--prompt-tokens") { DefaultValueFactory = _ => 64 };
        var maxTokens = new Option<int>("--max-tokens") { DefaultValueFactory = _ => 64 };
        var peer = new Option<bool>("--peer") { Description = "Also run the PyTorch eager peer", DefaultValueFactory = _ => true };
        var soak = new Option<double>("--soak-seconds") { Description = "After the sweep, hold the highest level this long and track server memory", DefaultValueFactory = _ => 0 };
        var markdown = new Option<string?>("--markdown") { Description = "Write the report to this Markdown file" };
        var plot = new Option<string?>("--plot") { Description = "Write the SVG plot to this file" };
        var serverArgs = new Option<string[]>("--server-arg") { Description = "Extra argument for a started server (repeatable)", DefaultValueFactory = _ => [] };

        var command = new Command("load", "Concurrency sweep over the OpenAI endpoint, with a PyTorch eager peer for comparison")
        {
            url, model, levels, seconds, rounds, promptTokens, maxTokens, peer, soak, markdown, plot, serverArgs,
        };
        command.SetAction(async (result, ct) =>
        {
            string root = RepositoryRoot.Resolve(".");
            string modelDir = Path.GetFullPath(result.GetValue(model) ?? Path.Combine(root, DefaultModel));
            var settings = new LoadSettings(
                result.GetValue(levels)!.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray(),
                TimeSpan.FromSeconds(result.GetValue(seconds)), Math.Max(1, result.GetValue(rounds)), result.GetValue(promptTokens), result.GetValue(maxTokens),
                TimeSpan.FromSeconds(result.GetValue(soak)));
            await using var server = result.GetValue(url) is null
                ? await ServerProcess.StartAsync(root, new[] { $"--Model:Path={modelDir}" }.Concat(result.GetValue(serverArgs)!), TimeSpan.FromMinutes(3))
                : null;
            var baseAddress = server?.BaseAddress ?? new Uri(result.GetValue(url)!.TrimEnd('/') + "/");
            return await RunAsync(root, modelDir, baseAddress, server, settings, result.GetValue(peer), result.GetValue(markdown), result.GetValue(plot), ct);
        });
        return command;
    }

    // The warm-up, named once: the report's header describes it from these.
    private const int FirstWarmUpConcurrency = 2;
    private static readonly TimeSpan FirstWarmUp = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan WarmUpAtHighestLevel = TimeSpan.FromSeconds(6);

    private sealed record LoadSettings(int[] Levels, TimeSpan PerLevel, int Rounds, int PromptTokens, int MaxTokens, TimeSpan Soak);

    private static async Task<int> RunAsync(string root, string modelDir, Uri baseAddress, ServerProcess? server, LoadSettings settings,
        bool runPeer, string? markdownFile, string? plotFile, CancellationToken ct)
    {
        var config = ModelConfig.Load(modelDir);
        var tokenizer = ModelTokenizer.Load(modelDir, config);
        var prompts = DeterministicPrompts(config.VocabSize, tokenizer, count: 64, settings.PromptTokens);
        using var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromMinutes(10) };
        string modelId = await ServedModelAsync(http, ct);

        // Warm-up: the first requests pay for JIT and libtorch's thread pools. Then the highest level, so that the
        // client's own code and connection pool are warm too: the client shares the server's cores, and without
        // this its first seconds at concurrency 16 took 25-38% of a core (6% once warm), and the server's
        // decode steps ran at about twice their steady time for 5-6 s of round 1.
        await LoadRunner.RunLevelAsync(http, modelId, prompts, FirstWarmUpConcurrency, settings.MaxTokens, FirstWarmUp, ct);
        await LoadRunner.RunLevelAsync(http, modelId, prompts, settings.Levels.Max(), settings.MaxTokens, WarmUpAtHighestLevel, ct);
        // The machine is shared and noisy: the sweep runs several rounds, and each round also runs the peer, so
        // that every ratio compares figures measured minutes apart at most, not a whole benchmark apart.
        var rounds = new List<LoadRound>();
        for (int round = 1; round <= settings.Rounds; round++)
        {
            var results = new List<LevelResult>();
            foreach (int level in settings.Levels)
            {
                Console.Error.WriteLine($"load: round {round}/{settings.Rounds}, concurrency {level} for {settings.PerLevel.TotalSeconds:F0} s");
                results.Add(await LoadRunner.RunLevelAsync(http, modelId, prompts, level, settings.MaxTokens, settings.PerLevel, ct));
            }
            PeerResult? peer = null;
            if (runPeer)
            {
                Console.Error.WriteLine($"load: round {round}/{settings.Rounds}, the PyTorch eager peer on 8 of the same prompts");
                peer = await PeerBaseline.RunAsync(root, modelDir, prompts.Take(8).ToList(), settings.MaxTokens, threads: null);
            }
            rounds.Add(new LoadRound(results, peer));
        }
        string header = string.Create(CultureInfo.InvariantCulture,
            $"## Load benchmark: {modelId}\n\n{Environment.ProcessorCount} cores; prompts of {settings.PromptTokens} token ids, {settings.MaxTokens} generated tokens each " +
            $"(greedy, ignore_eos, streamed with logprobs = 0 so every token is a chunk); {settings.Rounds} rounds of the sweep, {settings.PerLevel.TotalSeconds:F0} s per level " +
            $"and round, each round followed by the PyTorch peer, after a warm-up of {FirstWarmUp.TotalSeconds:F0} s at concurrency {FirstWarmUpConcurrency} and {WarmUpAtHighestLevel.TotalSeconds:F0} s at {settings.Levels.Max()}; server {baseAddress}");
        string report = LoadReport.Markdown(rounds, header);
        var pooled = LoadRound.Pool(rounds);
        if (settings.Soak > TimeSpan.Zero && server is not null) report += await SoakAsync(http, modelId, prompts, settings, server, ct);
        Console.WriteLine(report);
        if (markdownFile is not null) await File.WriteAllTextAsync(markdownFile, report, ct);
        if (plotFile is not null) LoadPlot.WriteSvg(pooled, plotFile, $"MoeServe load: {modelId}");
        return pooled.Sum(r => r.Errors) == 0 ? 0 : 1;
    }

    /// <summary>Holds the highest concurrency and samples the server's resident memory every second.</summary>
    private static async Task<string> SoakAsync(HttpClient http, string model, IReadOnlyList<int[]> prompts, LoadSettings settings,
        ServerProcess server, CancellationToken ct)
    {
        int level = settings.Levels.Max();
        Console.Error.WriteLine($"load: soak at concurrency {level} for {settings.Soak.TotalSeconds:F0} s");
        var samples = new List<(double Seconds, double Mib)>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                samples.Add((clock.Elapsed.TotalSeconds, server.ResidentMiB()));
                try { await Task.Delay(1000, stop.Token); } catch (OperationCanceledException) { }
            }
        });
        var soak = await LoadRunner.RunLevelAsync(http, model, prompts, level, settings.MaxTokens, settings.Soak, ct);
        stop.Cancel();
        await sampler;
        double window = Math.Min(20, settings.Soak.TotalSeconds / 3);
        double first = samples.Where(s => s.Seconds <= window).Average(s => s.Mib);
        double last = samples.Where(s => s.Seconds >= clock.Elapsed.TotalSeconds - window).Average(s => s.Mib);
        int fiveHundreds = soak.Requests.Count(r => r.Status >= 500 || r.Status == 0);
        return string.Create(CultureInfo.InvariantCulture,
            $"\n### Soak: {level} streaming clients for {settings.Soak.TotalSeconds:F0} s\n\n" +
            $"- requests completed {soak.Completed}, refused with 429 {soak.Rejected}, 5xx or failed {fiveHundreds}, other errors {soak.Errors - fiveHundreds}\n" +
            $"- server RSS: first {window:F0} s mean {first:F0} MiB, last {window:F0} s mean {last:F0} MiB, change {Math.Round((last - first) / first * 100, 1):+0.0;-0.0;0.0}%, peak {samples.Max(s => s.Mib):F0} MiB\n") +
            LoadReport.FailureLines([soak]);
    }

    private static async Task<string> ServedModelAsync(HttpClient http, CancellationToken ct)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync("v1/models", ct));
        return doc.RootElement.GetProperty("data")[0].GetProperty("id").GetString()!;
    }

    /// <summary>Fixed pseudo-random prompts of ordinary (non-special) token ids, the same for MoeServe and the peer.</summary>
    private static List<int[]> DeterministicPrompts(int vocab, ModelTokenizer tokenizer, int count, int length)
    {
        var random = new Random(1234);
        var ordinary = Enumerable.Range(0, vocab).Where(id => !tokenizer.IsSpecial(id)).ToArray();
        return Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, length).Select(_ => ordinary[random.Next(ordinary.Length)]).ToArray()).ToList();
    }
}
