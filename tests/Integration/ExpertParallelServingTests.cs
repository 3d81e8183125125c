using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using MoeServe.Integration.Tests.Infrastructure;
using Xunit.Abstractions;

namespace MoeServe.Integration.Tests;

/// <summary>
/// Expert parallelism served for real: experts spread over virtual CPU ranks change no output (only where the
/// experts run), the load endpoint and the metrics report the placement and each device's work, and a real
/// Prometheus sees capacity-aware routing shrink the straggler ratio of the trained model's unbalanced routing.
/// In the "server" collection so test 1 can compare with the shared single-device server, and so these extra
/// servers run one after another with the other tests of that collection instead of alongside them.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ExpertParallelServingTests(ServerFixture fixture, ITestOutputHelper output)
{
    private const double LogprobTolerance = 1e-4;

    /// <summary>The trained model: its routing is genuinely unbalanced (the random model's is not).</summary>
    private const string TrainedModelId = "moeserve-moe-tiny";
    private static string TrainedModelDir => Path.Combine(RepoPaths.Root, "models", TrainedModelId);

    // Scripture and chat tasks: the domains the trained model routes to different experts.
    private static readonly string[] ScripturePrompts =
    [
        "And God said, Let there be light",
        "In the beginning God created the heaven and the earth. And the earth was without form, and void",
        "And the LORD spake unto Moses, saying, Speak unto the children of Israel",
    ];

    private static readonly string[] ChatPrompts =
    [
        "What is 35 + 64?",
        "Sort these numbers: 98, 34, 94, 36",
        "Count the words in: the quick brown fox jumps",
        "Copy this exactly: alpha beta gamma delta",
    ];

    /// <summary>One greedy generation: its text and the logprob of every generated token.</summary>
    private sealed record Greedy(string Text, double[] Logprobs)
    {
        public override string ToString() => $"'{Text}' [{string.Join(", ", Logprobs.Select(l => l.ToString("F5", CultureInfo.InvariantCulture)))}]";
    }

    private static async Task<Greedy> CompleteAsync(HttpClient http, string model, string prompt, int maxTokens = 16)
    {
        var body = HttpApi.CompletionBody(prompt, maxTokens);
        body["model"] = model;
        body["logprobs"] = 1;
        var json = await HttpApi.PostOkAsync(http, HttpApi.Completions, body);
        var choice = json["choices"]![0]!;
        return new Greedy(HttpApi.Text(choice["text"]),
            choice["logprobs"]!["token_logprobs"]!.AsArray().Select(l => l!.GetValue<double>()).ToArray());
    }

    private static async Task<Greedy> ChatAsync(HttpClient http, string model, string content, int maxTokens = 16)
    {
        var body = HttpApi.ChatBody(content, maxTokens);
        body["model"] = model;
        body["logprobs"] = true;
        var json = await HttpApi.PostOkAsync(http, HttpApi.Chat, body);
        var choice = json["choices"]![0]!;
        return new Greedy(HttpApi.Text(choice["message"]!["content"]),
            choice["logprobs"]!["content"]!.AsArray().Select(t => t!["logprob"]!.GetValue<double>()).ToArray());
    }

    /// <summary>Scripture as plain completions, the tasks as chat: what the trained model was trained on.</summary>
    private static Task<Greedy[]> MixedAsync(HttpClient http, string model) =>
        Task.WhenAll(ScripturePrompts.Select(p => CompleteAsync(http, model, p)).Concat(ChatPrompts.Select(p => ChatAsync(http, model, p))));

    private static async Task<Greedy[]> MixedOneAtATimeAsync(HttpClient http, string model)
    {
        var results = new List<Greedy>();
        foreach (var p in ScripturePrompts) results.Add(await CompleteAsync(http, model, p));
        foreach (var p in ChatPrompts) results.Add(await ChatAsync(http, model, p));
        return [.. results];
    }

    /// <param name="tolerance">Logprob tolerance: <see cref="LogprobTolerance"/> where the batching is the same (one request at
    /// a time), <see cref="Tolerances.BatchedLogprob"/> where requests share steps.</param>
    private static void AssertSameGreedy(IReadOnlyList<Greedy> expected, IReadOnlyList<Greedy> actual, string what, double tolerance = LogprobTolerance)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(expected[i].Text == actual[i].Text, $"{what}, output {i}: expected {expected[i]}, got {actual[i]}");
            Assert.True(expected[i].Logprobs.Length == actual[i].Logprobs.Length, $"{what}, output {i}: expected {expected[i]}, got {actual[i]}");
            for (int t = 0; t < expected[i].Logprobs.Length; t++)
                Assert.True(Math.Abs(expected[i].Logprobs[t] - actual[i].Logprobs[t]) <= tolerance,
                    $"{what}, output {i}, token {t}: logprob {actual[i].Logprobs[t]} vs {expected[i].Logprobs[t]}\nexpected {expected[i]}\ngot {actual[i]}");
        }
    }

    private static HttpClient Client(ServerProcess server) => new() { BaseAddress = server.BaseUri, Timeout = TimeSpan.FromSeconds(180) };

    private static int[][] Matrix(JsonNode? node) => node!.AsArray().Select(r => r!.AsArray().Select(v => v!.GetValue<int>()).ToArray()).ToArray();

    private static long[][] LongMatrix(JsonNode? node) => node!.AsArray().Select(r => r!.AsArray().Select(v => v!.GetValue<long>()).ToArray()).ToArray();

    /// <summary>Each device's pairs in the load report are the sum of its experts' pairs.</summary>
    private static void AssertDeviceTotalsSumExpertTotals(JsonNode load)
    {
        var parallel = load["expert_parallel"]!;
        var total = LongMatrix(load["total"]);
        var deviceOf = Matrix(parallel["device_of"]);
        var deviceTotal = LongMatrix(parallel["device_total"]);
        int devices = parallel["devices"]!.AsArray().Count;
        Assert.Equal(total.Length, deviceTotal.Length);
        bool replicated = parallel["replicas"]!.AsArray().Any(layer => layer!.AsArray().Any(r => r!.AsArray().Count > 1));
        for (int l = 0; l < total.Length; l++)
        {
            // A replicated expert's pairs are split per step, so only the layer's sum is fixed by the expert totals.
            if (replicated)
            {
                Assert.Equal(total[l].Sum(), deviceTotal[l].Sum());
                continue;
            }
            var expected = new long[devices];
            for (int e = 0; e < total[l].Length; e++) expected[deviceOf[l][e]] += total[l][e];
            Assert.Equal(expected, deviceTotal[l]);
        }
    }

    [Fact]
    public async Task Four_virtual_devices_give_the_single_device_outputs_and_report_contiguous_blocks()
    {
        string[] completions = ["The first expert", "Numbers: 1 2 3 4 5 6", "A much longer prompt that takes a few more tokens of prefill work"];
        string[] chats = ["hello", "Ünïcödé — 混合专家 🙂"];
        async Task<Greedy[]> AllAsync(HttpClient http, bool concurrent)
        {
            var jobs = completions.Select(p => (Func<Task<Greedy>>)(() => CompleteAsync(http, RepoPaths.ModelId, p)))
                .Concat(chats.Select(p => (Func<Task<Greedy>>)(() => ChatAsync(http, RepoPaths.ModelId, p)))).ToList();
            if (concurrent) return await Task.WhenAll(jobs.Select(j => j()));
            var results = new List<Greedy>();
            foreach (var j in jobs) results.Add(await j());
            return [.. results];
        }

        var single = await AllAsync(fixture.Http, concurrent: false);

        await using var server = await ServerProcess.StartAsync("ep-contiguous", "--ExpertParallel:VirtualDevices=4");
        using var http = Client(server);
        string before = (await HttpApi.GetAsync(http, "/metrics")).Body;
        AssertSameGreedy(single, await AllAsync(http, concurrent: false), "4 devices, one at a time");
        // At once: the requests share engine steps, so every device gets rows of several sequences.
        AssertSameGreedy(single, await AllAsync(http, concurrent: true), "4 devices, concurrent", Tolerances.BatchedLogprob);

        string metrics = (await HttpApi.GetAsync(http, "/metrics")).Body;
        for (int d = 0; d < 4; d++)
        {
            string series = $"moeserve_device_tokens_total{{device=\"cpu:{d}\"}}";
            Assert.True(HttpApi.MetricValue(metrics, series) > 0, $"{series} missing or zero:\n{metrics}");
            Assert.True(HttpApi.MetricValue(metrics, $"moeserve_device_busy_seconds_total{{device=\"cpu:{d}\"}}") > 0, metrics);
        }
        Assert.DoesNotContain("device=\"cpu:4\"", metrics);
        // Every executed token-expert pair ran on exactly one device.
        double Delta(string name) => (HttpApi.MetricValue(metrics, name) ?? 0) - (HttpApi.MetricValue(before, name) ?? 0);
        Assert.Equal(Delta("moeserve_expert_tokens_total"), Delta("moeserve_device_tokens_total"));

        var load = (await HttpApi.GetAsync(http, "/v1/moe/load")).Json;
        var parallel = load["expert_parallel"]!;
        Assert.Equal(["cpu:0", "cpu:1", "cpu:2", "cpu:3"], parallel["devices"]!.AsArray().Select(HttpApi.Text));
        Assert.Equal("contiguous", HttpApi.Text(parallel["placement"]));
        var deviceOf = Matrix(parallel["device_of"]);
        Assert.Equal(4, deviceOf.Length);
        Assert.All(deviceOf, layer => Assert.Equal([0, 0, 1, 1, 2, 2, 3, 3], layer));
        AssertDeviceTotalsSumExpertTotals(load);
        Assert.All(parallel["straggler_ratio"]!.AsArray(), r => Assert.InRange(r!.GetValue<double>(), 1.0, 4.0));
    }

    [Fact]
    public async Task Load_aware_and_explicit_placements_of_the_trained_model_give_the_single_device_outputs()
    {
        string profile = Path.Combine(Directory.CreateTempSubdirectory("moeserve-load-profile-").FullName, "load.json");
        Greedy[] single;
        long[][] recorded;
        await using (var reference = await ServerProcess.StartAsync("ep-reference", $"--Model:Path={TrainedModelDir}"))
        {
            using var http = Client(reference);
            single = await MixedOneAtATimeAsync(http, TrainedModelId);
            // The saved load report is the profile, exactly as an operator would record it.
            string body = (await HttpApi.GetAsync(http, "/v1/moe/load")).Body;
            File.WriteAllText(profile, body);
            recorded = LongMatrix(JsonNode.Parse(body)!["total"]);
        }
        try
        {
            await using (var server = await ServerProcess.StartAsync("ep-load-aware", $"--Model:Path={TrainedModelDir}",
                             "--ExpertParallel:VirtualDevices=4", "--ExpertParallel:Placement=load_aware", $"--ExpertParallel:LoadProfile={profile}"))
            {
                using var http = Client(server);
                AssertSameGreedy(single, await MixedOneAtATimeAsync(http, TrainedModelId), "load_aware, one at a time");
                AssertSameGreedy(single, await MixedAsync(http, TrainedModelId), "load_aware, concurrent", Tolerances.BatchedLogprob);

                var load = (await HttpApi.GetAsync(http, "/v1/moe/load")).Json;
                var parallel = load["expert_parallel"]!;
                Assert.Equal("load_aware", HttpApi.Text(parallel["placement"]));
                var deviceOf = Matrix(parallel["device_of"]);
                Assert.Equal(recorded.Length, deviceOf.Length);
                for (int l = 0; l < deviceOf.Length; l++)
                {
                    // Memory per device as with contiguous placement: two of the eight experts each.
                    Assert.All(Enumerable.Range(0, 4), d => Assert.Equal(2, deviceOf[l].Count(x => x == d)));
                    // The two hottest experts of the profile never share a device.
                    var hottest = Enumerable.Range(0, 8).OrderByDescending(e => recorded[l][e]).Take(2).ToArray();
                    Assert.True(deviceOf[l][hottest[0]] != deviceOf[l][hottest[1]],
                        $"layer {l}: experts {hottest[0]} and {hottest[1]} (loads {string.Join(",", recorded[l])}) both on device {deviceOf[l][hottest[0]]}");
                }
                // A profile of unbalanced routing moves experts off their contiguous blocks somewhere.
                Assert.Contains(deviceOf, layer => !layer.SequenceEqual([0, 0, 1, 1, 2, 2, 3, 3]));
                AssertDeviceTotalsSumExpertTotals(load);
            }

            // Redundant experts: the hottest get replicas on other devices, each taking an even share of the pairs.
            await using (var server = await ServerProcess.StartAsync("ep-replicated", $"--Model:Path={TrainedModelDir}",
                             "--ExpertParallel:VirtualDevices=4", "--ExpertParallel:Placement=load_aware", $"--ExpertParallel:LoadProfile={profile}",
                             "--ExpertParallel:RedundantExperts=4"))
            {
                using var http = Client(server);
                AssertSameGreedy(single, await MixedAsync(http, TrainedModelId), "load_aware with 4 redundant experts, concurrent", Tolerances.BatchedLogprob);
                var load = (await HttpApi.GetAsync(http, "/v1/moe/load")).Json;
                foreach (var layer in load["expert_parallel"]!["replicas"]!.AsArray())
                {
                    var replicas = layer!.AsArray().Select(r => r!.AsArray().Select(d => d!.GetValue<int>()).ToArray()).ToArray();
                    Assert.Equal(12, replicas.Sum(r => r.Length)); // 8 experts + 4 replicas, 3 per device
                    Assert.All(Enumerable.Range(0, 4), d => Assert.Equal(3, replicas.Count(r => r.Contains(d))));
                    Assert.All(replicas, r => Assert.Equal(r.Length, r.Distinct().Count()));
                }
                AssertDeviceTotalsSumExpertTotals(load);
            }

            // Explicit: one map for every layer, a different one for layer 2.
            int[] map = [3, 1, 0, 2, 2, 0, 1, 3], layer2 = [0, 1, 2, 3, 0, 1, 2, 3];
            var args = new List<string> { $"--Model:Path={TrainedModelDir}", "--ExpertParallel:VirtualDevices=4", "--ExpertParallel:Placement=explicit" };
            args.AddRange(map.Select((d, e) => $"--ExpertParallel:ExpertMap:{e}={d}"));
            args.AddRange(layer2.Select((d, e) => $"--ExpertParallel:LayerExpertMaps:2:{e}={d}"));
            await using (var server = await ServerProcess.StartAsync("ep-explicit", [.. args]))
            {
                using var http = Client(server);
                AssertSameGreedy(single, await MixedAsync(http, TrainedModelId), "explicit, concurrent", Tolerances.BatchedLogprob);
                var load = (await HttpApi.GetAsync(http, "/v1/moe/load")).Json;
                Assert.Equal("explicit", HttpApi.Text(load["expert_parallel"]!["placement"]));
                var deviceOf = Matrix(load["expert_parallel"]!["device_of"]);
                Assert.Equal([map, map, layer2, map], deviceOf);
                AssertDeviceTotalsSumExpertTotals(load);
            }
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(profile)!, recursive: true);
        }
    }

    /// <summary>
    /// The same mixed traffic on two 4-device servers of the trained model, vanilla and token_drop at capacity
    /// factor 1.0, scraped by one real Prometheus: capping each expert at its fair share of a step's pairs caps
    /// the busiest device too, so the token_drop server's straggler ratio must be lower.
    /// </summary>
    [RequiresBinaryFact(PrometheusServer.Binary, "prometheus")]
    public async Task Prometheus_sees_token_drop_lower_the_straggler_ratio_of_the_trained_model()
    {
        await using var vanilla = await ServerProcess.StartAsync("ep-vanilla", $"--Model:Path={TrainedModelDir}", "--ExpertParallel:VirtualDevices=4");
        await using var tokenDrop = await ServerProcess.StartAsync("ep-token-drop", $"--Model:Path={TrainedModelDir}", "--ExpertParallel:VirtualDevices=4",
            "--Routing:Policy=token_drop", "--Routing:CapacityFactor=1.0");
        using var vanillaHttp = Client(vanilla);
        using var tokenDropHttp = Client(tokenDrop);

        await using var prometheus = await PrometheusServer.StartAsync("moeserve", $"127.0.0.1:{vanilla.Port}", $"127.0.0.1:{tokenDrop.Port}");

        // Prefill-heavy traffic (long prompts, 4 tokens each) sent all at once, so engine steps batch
        // scripture and chat tasks together, as expert-parallel serving sees them; capacity-aware routing
        // acts on prefill tokens (Routing:ApplyToDecode is false).
        string[] scripture =
        [
            "And God said, Let there be light: and there was light. And God saw the light, that it was good: and God divided the light from the darkness.",
            "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.",
            "And the LORD spake unto Moses, saying, Speak unto the children of Israel, that they bring me an offering: of every man that giveth it willingly.",
        ];
        string[] tasks =
        [
            "What is 35 + 64?", "Sort these numbers: 98, 34, 94, 36", "What is 17 + 25?", "Sort these numbers: 12, 7, 55, 3, 41",
            "Count the words in: the quick brown fox jumps over the lazy dog", "Copy this exactly: alpha beta gamma delta epsilon",
        ];
        async Task TrafficAsync(HttpClient http)
        {
            for (int round = 0; round < 3; round++)
                await Task.WhenAll(scripture.Select(p => CompleteAsync(http, TrainedModelId, p, maxTokens: 4))
                    .Concat(tasks.Select(p => ChatAsync(http, TrainedModelId, p, maxTokens: 4))));
        }
        await Task.WhenAll(TrafficAsync(vanillaHttp), TrafficAsync(tokenDropHttp));

        // Wait until Prometheus holds the gauges as they stand after the traffic (the servers' own /metrics),
        // so the comparison is of what Prometheus scraped, not of an earlier scrape.
        const string query = "avg by (instance) (moeserve_layer_straggler_ratio)";
        var expected = new Dictionary<string, double>
        {
            [$"127.0.0.1:{vanilla.Port}"] = await AverageGaugeAsync(vanillaHttp),
            [$"127.0.0.1:{tokenDrop.Port}"] = await AverageGaugeAsync(tokenDropHttp),
        };
        Dictionary<string, double> scraped = [];
        string last = "";
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            var result = await prometheus.QueryAsync(query);
            last = result.ToJsonString();
            scraped = result.ToDictionary(s => HttpApi.Text(s!["metric"]!["instance"]),
                s => double.Parse(HttpApi.Text(s!["value"]![1]), CultureInfo.InvariantCulture));
            if (expected.All(kv => scraped.TryGetValue(kv.Key, out var v) && Math.Abs(v - kv.Value) < 1e-9)) break;
            await Task.Delay(500);
        }
        Assert.True(expected.All(kv => scraped.TryGetValue(kv.Key, out var v) && Math.Abs(v - kv.Value) < 1e-9),
            $"Prometheus did not reach the servers' gauges within 60 s: expected {string.Join(", ", expected)}, last answer {last}\n{prometheus.Output}");

        double vanillaRatio = scraped[$"127.0.0.1:{vanilla.Port}"], tokenDropRatio = scraped[$"127.0.0.1:{tokenDrop.Port}"];
        var max = (await prometheus.QueryAsync("max by (instance) (moeserve_layer_straggler_ratio)"))
            .ToDictionary(s => HttpApi.Text(s!["metric"]!["instance"]), s => HttpApi.Text(s!["value"]![1]));
        output.WriteLine($"straggler ratio, mean over layers (max layer): vanilla {vanillaRatio:F4} ({max[$"127.0.0.1:{vanilla.Port}"]}), " +
                         $"token_drop cf 1.0 {tokenDropRatio:F4} ({max[$"127.0.0.1:{tokenDrop.Port}"]})");
        var dropped = await prometheus.QueryAsync("sum by (instance) (moeserve_expert_dropped_total)");
        output.WriteLine("dropped pairs: " + dropped.ToJsonString());

        Assert.InRange(vanillaRatio, 1.0, 4.0);
        Assert.InRange(tokenDropRatio, 1.0, 4.0);
        Assert.True(tokenDropRatio < vanillaRatio, $"token_drop straggler ratio {tokenDropRatio} is not below vanilla's {vanillaRatio}");
    }

    private static async Task<double> AverageGaugeAsync(HttpClient http)
    {
        string metrics = (await HttpApi.GetAsync(http, "/metrics")).Body;
        var layers = Enumerable.Range(0, 4).Select(l => HttpApi.MetricValue(metrics, $"moeserve_layer_straggler_ratio{{layer=\"{l}\"}}")).ToArray();
        Assert.All(layers, v => Assert.NotNull(v));
        return layers.Average(v => v!.Value);
    }
}
