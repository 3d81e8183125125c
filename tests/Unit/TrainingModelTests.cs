using System.Text.Json;
using MoeServe.Inference.Checkpoint;
using ForwardBatch = MoeServe.Inference.Model.ForwardBatch;
using MoeForCausalLM = MoeServe.Inference.Model.MoeForCausalLM;
using SequenceSlice = MoeServe.Inference.Model.SequenceSlice;
using MoeServe.Training.Model;
using MoeServe.Training.Train;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Unit.Tests;

/// <summary>
/// The training model (MoeServe.Training.Model) against the inference model that serves its checkpoints:
/// same parameter names and shapes, same logits, a working BF16 writer, the load-balancing loss, and
/// bit-identical training for a seed (also across a stop and --resume).
/// </summary>
public class TrainingModelTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>A tiny Mixtral: 2 layers, hidden 32, 4 query / 2 kv heads of 8, 4 experts of FFN 48, top-2.</summary>
    private static ModelConfig TinyConfig(int vocab = 96) => MixtralConfigs.Default(vocab, 1, [2]) with
    {
        HiddenSize = 32, IntermediateSize = 48, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8,
        NumExperts = 4, ExpertsPerToken = 2, MaxPositionEmbeddings = 128,
    };

    [Fact]
    public void Parameter_names_and_shapes_are_the_Hugging_Face_Mixtral_keys()
    {
        var config = TinyConfig();
        torch.manual_seed(1);
        using var model = new MixtralForCausalLM(config);
        var actual = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);

        // Written out from the Hugging Face Mixtral layout (what the inference loader asks WeightStore for).
        long v = 96, h = 32, f = 48, q = 4 * 8, kv = 2 * 8;
        var expected = new Dictionary<string, long[]> { ["model.embed_tokens.weight"] = [v, h], ["model.norm.weight"] = [h], ["lm_head.weight"] = [v, h] };
        for (int i = 0; i < 2; i++)
        {
            expected[$"model.layers.{i}.input_layernorm.weight"] = [h];
            expected[$"model.layers.{i}.post_attention_layernorm.weight"] = [h];
            expected[$"model.layers.{i}.self_attn.q_proj.weight"] = [q, h];
            expected[$"model.layers.{i}.self_attn.k_proj.weight"] = [kv, h];
            expected[$"model.layers.{i}.self_attn.v_proj.weight"] = [kv, h];
            expected[$"model.layers.{i}.self_attn.o_proj.weight"] = [h, q];
            expected[$"model.layers.{i}.block_sparse_moe.gate.weight"] = [4, h];
            for (int e = 0; e < 4; e++)
            {
                expected[$"model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight"] = [f, h];
                expected[$"model.layers.{i}.block_sparse_moe.experts.{e}.w2.weight"] = [h, f];
                expected[$"model.layers.{i}.block_sparse_moe.experts.{e}.w3.weight"] = [f, h];
            }
        }
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, shape) in expected) Assert.True(shape.SequenceEqual(actual[name]), $"{name}: [{string.Join(", ", actual[name])}]");
        Assert.Equal(MixtralConfigs.CheckpointShapes(config).Select(s => s.Name).Order(), actual.Keys.Order());
        Assert.Empty(model.named_buffers()); // nothing else would be saved or moved
    }

    [Fact]
    public void Default_model_has_5_to_20_million_parameters()
    {
        var config = MixtralConfigs.Default(4096, 0, [0]);
        long total = MixtralConfigs.CheckpointShapes(config).Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b));
        output.WriteLine($"default model: {total:N0} parameters");
        Assert.InRange(total, 5_000_000, 20_000_000);
    }

    [Fact]
    public void Inference_model_loaded_from_the_written_checkpoint_gives_the_same_logits()
    {
        var config = TinyConfig();
        torch.manual_seed(7);
        // A larger init than training's 0.02 so logits are O(1) and routing differs token to token.
        using var model = new MixtralForCausalLM(config, ScalarType.Float32, initStd: 0.2);
        string dir = TempDir();
        try
        {
            HfCheckpoint.Save(model, dir, SafetensorsDtype.F32);
            var tokens = new Random(3).GetItems(Enumerable.Range(0, config.VocabSize).Select(i => (long)i).ToArray(), 40);

            float[] trainingLogits;
            using (torch.no_grad())
            using (var ids = torch.tensor(tokens).view(1, -1))
            using (var result = model.forward(ids).Logits)
                trainingLogits = result.data<float>().ToArray();

            var inferenceLogits = InferenceLogits(dir, tokens, ScalarType.Float32);
            double worst = trainingLogits.Zip(inferenceLogits, (a, b) => Math.Abs(a - b)).Max();
            double scale = trainingLogits.Max(Math.Abs);
            output.WriteLine($"largest |logit| {scale:F3}, largest difference {worst:E2}");
            Assert.True(scale > 0.5, "logits too small for the comparison to mean anything");
            Assert.True(worst < 1e-4, $"training and inference logits differ by {worst:E2}");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Bf16_checkpoint_round_trips_within_bf16_precision()
    {
        var config = TinyConfig();
        torch.manual_seed(11);
        using var model = new MixtralForCausalLM(config, ScalarType.Float32, initStd: 0.2);
        string dir = TempDir();
        try
        {
            HfCheckpoint.Save(model, dir, SafetensorsDtype.BF16);
            using var file = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors"));
            Assert.All(file.Entries.Values, e => Assert.Equal("BF16", e.Dtype));
            using var store = WeightStore.Open(dir);
            foreach (var (name, parameter) in model.named_parameters())
            {
                using var scope = NewDisposeScope();
                var stored = store.Load(name, parameter.shape, ScalarType.Float32, CPU);
                // Bit-equal to libtorch's own float32 -> bfloat16 conversion (round to nearest even) ...
                Assert.True(stored.equal(parameter.detach().to(ScalarType.BFloat16).to(ScalarType.Float32)).all().item<bool>(), name);
                // ... hence within half a bf16 unit in the last place: 8 significant bits, so at most 2^-8 relative.
                var error = (stored - parameter.detach()).abs();
                Assert.True(error.le(parameter.detach().abs() * Math.Pow(2, -8)).all().item<bool>(), name);
            }
            Assert.Equal("bfloat16", JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json"))).RootElement.GetProperty("torch_dtype").GetString());

            // The served BF16 model still agrees with the float32 training forward to bf16 accuracy.
            var tokens = Enumerable.Range(0, 24).Select(i => (long)(i * 7 % config.VocabSize)).ToArray();
            float[] reference;
            using (torch.no_grad())
            using (var ids = torch.tensor(tokens).view(1, -1))
            using (var result = model.forward(ids).Logits)
                reference = result.data<float>().ToArray();
            var served = InferenceLogits(dir, tokens, ScalarType.Float32);
            double worst = reference.Zip(served, (a, b) => Math.Abs(a - b)).Max(), scale = reference.Max(Math.Abs);
            output.WriteLine($"bf16 weights: largest logit difference {worst:F4} of {scale:F3}");
            Assert.True(worst < 0.05 * scale, $"bf16 weights move logits by {worst:F4} (largest logit {scale:F3})");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    [InlineData(-3.5f)]
    [InlineData(1.00390625f)]          // exactly halfway between two bf16 values, lower one even: stays
    [InlineData(1.01171875f)]          // halfway, upper one even: rounds up
    [InlineData(3.4028235e38f)]        // rounds to infinity, as libtorch does
    [InlineData(1e-40f)]               // subnormal
    [InlineData(float.NegativeInfinity)]
    public void Bf16_rounding_matches_libtorch(float value)
    {
        using var t = torch.tensor(new[] { value }).to(ScalarType.BFloat16);
        ushort expected = BitConverter.ToUInt16(t.bytes.ToArray());
        Assert.Equal(expected, SafetensorsWriter.ToBfloat16(value));
    }

    [Fact]
    public void Bf16_compute_stays_close_to_float32()
    {
        var config = TinyConfig();
        torch.manual_seed(5);
        using var model32 = new MixtralForCausalLM(config, ScalarType.Float32, initStd: 0.2);
        torch.manual_seed(5);
        using var model16 = new MixtralForCausalLM(config, ScalarType.BFloat16, initStd: 0.2);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var ids = torch.randint(0, config.VocabSize, [2, 16], dtype: ScalarType.Int64);
        var a = model32.forward(ids).Logits;
        var b = model16.forward(ids).Logits;
        Assert.Equal(ScalarType.Float32, b.dtype);
        double worst = (a - b).abs().max().item<float>(), scale = a.abs().max().item<float>();
        output.WriteLine($"bf16 matmuls: largest logit difference {worst:F4} of {scale:F3}");
        Assert.True(worst < 0.1 * scale);
    }

    [Fact]
    public void Aux_loss_is_one_for_uniform_routing_and_larger_when_skewed()
    {
        const int experts = 4, tokens = 8; // top-2: N * k = 16 assignments
        using var scope = NewDisposeScope();
        // Uniform: every expert has probability 1/E and gets the same share of the N * k assignments.
        var uniform = torch.full([tokens, experts], 1.0f / experts);
        Assert.Equal(1.0, LoadBalancing.AuxLoss(uniform, [4, 4, 4, 4]).item<float>(), 6);

        // Skewed: most probability and all assignments on experts 0 and 1.
        var skewed = torch.tensor(new float[] { 0.6f, 0.3f, 0.05f, 0.05f }).expand(tokens, experts).contiguous();
        double loss = LoadBalancing.AuxLoss(skewed, [tokens, tokens, 0, 0]).item<float>();
        Assert.Equal(experts * (0.5 * 0.6 + 0.5 * 0.3), loss, 5); // E * sum f_e P_e = 1.8
        Assert.True(loss > 1.0);
        // Uniform assignments with uneven probabilities still score 1 (sum_e P_e = 1): it takes both to be uneven.
        Assert.Equal(1.0, LoadBalancing.AuxLoss(skewed, [4, 4, 4, 4]).item<float>(), 5);
    }

    [Fact]
    public void Aux_loss_of_the_moe_block_follows_its_routing()
    {
        var config = TinyConfig();
        torch.manual_seed(2);
        using var block = new SparseMoeBlock(config, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using (torch.no_grad())
            foreach (var (name, p) in block.named_parameters())
                if (name == "gate.weight") p.zero_(); // equal logits: uniform probabilities, ties to experts 0 and 1
        var x = torch.randn(10, config.HiddenSize);
        var result = block.forward(x);
        Assert.Equal([10L, 10, 0, 0], result.ExpertCounts);
        Assert.Equal(1.0, result.AuxLoss.item<float>(), 5); // P uniform, so E * sum f_e / E = 1

        using (torch.no_grad())
            foreach (var (name, p) in block.named_parameters())
                if (name == "gate.weight") { p.zero_(); p[0].fill_(1.0); } // expert 0 favoured by every token with x[.., :] summing > 0
        var positive = torch.rand(10, config.HiddenSize) + 0.1;
        var skewed = block.forward(positive);
        Assert.Equal(10L, skewed.ExpertCounts[0]);
        Assert.True(skewed.AuxLoss.item<float>() > 1.0);
    }

    [Fact]
    public void Sparse_dispatch_equals_a_dense_reference()
    {
        var config = TinyConfig();
        torch.manual_seed(4);
        using var block = new SparseMoeBlock(config, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x = torch.randn(12, config.HiddenSize);
        var sparse = block.forward(x).Output;
        var p = block.named_parameters().ToDictionary(n => n.name, n => (Tensor)n.parameter);
        // Every expert on every token, weighted by the renormalised top-2 probabilities (zero elsewhere).
        var probs = torch.nn.functional.linear(x, p["gate.weight"]).softmax(1);
        var (top, ids) = probs.topk(2, dim: 1);
        var weights = torch.zeros_like(probs).scatter(1, ids, top / top.sum(1, keepdim: true));
        var dense = torch.zeros_like(x);
        for (int e = 0; e < config.NumExperts; e++)
        {
            var h = torch.nn.functional.silu(torch.nn.functional.linear(x, p[$"experts.{e}.w1.weight"])) * torch.nn.functional.linear(x, p[$"experts.{e}.w3.weight"]);
            dense += weights[.., e].unsqueeze(1) * torch.nn.functional.linear(h, p[$"experts.{e}.w2.weight"]);
        }
        Assert.True(sparse.allclose(dense, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void Training_is_bit_identical_for_a_seed_and_across_a_resume()
    {
        string root = TempDir();
        try
        {
            string data = WriteSyntheticData(Path.Combine(root, "data"));
            var first = RunTraining(data, Path.Combine(root, "a"), steps: 3);
            var second = RunTraining(data, Path.Combine(root, "b"), steps: 3);
            Assert.Equal(first, second);

            // Stopped after step 1 and resumed: the same weights and optimizer state as the straight run.
            Assert.Empty(RunTraining(data, Path.Combine(root, "c"), steps: 3, stopAfter: 1, expectedExit: 3));
            var resumed = RunTraining(data, Path.Combine(root, "c"), steps: 3, resume: true);
            Assert.Equal(first, resumed);

            // A different seed gives different weights (the comparison above is not vacuous).
            Assert.NotEqual(first, RunTraining(data, Path.Combine(root, "d"), steps: 3, seed: 99));

            // The exported folder loads in the inference model.
            using var served = MoeForCausalLM.Load(Path.Combine(root, "a"), ScalarType.Float32, CPU);
            Assert.Equal(2, served.Config.NumLayers);
            var tokenizer = MoeServe.Inference.Tokenization.ModelTokenizer.Load(Path.Combine(root, "a"), served.Config);
            Assert.Contains(tokenizer.SpecialTokens["</s>"], tokenizer.EosIds);
            Assert.Contains("Held-out loss", File.ReadAllText(Path.Combine(root, "a", "README.md")));
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    /// <summary>Trains the tiny model; returns the bytes of its float32 state (weights, then optimizer) or none when stopped early.</summary>
    private byte[] RunTraining(string data, string outDir, int steps, long seed = 1234, int? stopAfter = null, bool resume = false, int expectedExit = 0)
    {
        var settings = new TrainSettings
        {
            DataDir = data, OutDir = outDir, Seed = seed, Steps = steps, BatchSize = 2, SeqLen = 16, LearningRate = 1e-2,
            WarmupSteps = 1, AuxLossCoef = 0.01, ComputeDtype = "bfloat16", Threads = 1, Resume = resume, EvalEvery = 2,
            EvalBatches = 1, CheckpointEvery = 2, StopAfter = stopAfter,
        };
        if (resume) settings = TrainState.ReadProgress(settings.StateDir).Settings with { Resume = true, StopAfter = null };
        var log = new StringWriter();
        int exit = new Trainer(settings, log, corpus => TinyConfig(corpus.VocabSize) with { BosTokenId = corpus.BosId, EosTokenIds = corpus.EosIds })
            .Run("moeserve-train train (test)");
        output.WriteLine(log.ToString());
        Assert.Equal(expectedExit, exit);
        if (exit != 0) return [];
        return [.. File.ReadAllBytes(Path.Combine(settings.StateDir, "model.safetensors")), .. File.ReadAllBytes(Path.Combine(settings.StateDir, "optimizer.bin"))];
    }

    /// <summary>A data folder per docs/training-data-format.md, with the Mixtral fixture's tokenizer standing in.</summary>
    private static string WriteSyntheticData(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "tokenizer"));
        Directory.CreateDirectory(Path.Combine(dir, "train"));
        Directory.CreateDirectory(Path.Combine(dir, "heldout"));
        string fixture = RepositoryPaths.Fixture("mixtral-tiny-bf16-sharded");
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(fixture, name), Path.Combine(dir, "tokenizer", name));
        var random = new Random(5);
        string[] words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "home"];
        string Prose() => string.Join(' ', Enumerable.Range(0, random.Next(5, 30)).Select(_ => words[random.Next(words.Length)])) + ".</s>";
        string Sum() { int a = random.Next(50), b = random.Next(50); return $"<|im_start|>user\n{a} + {b}?<|im_end|>\n<|im_start|>assistant\n{a + b}<|im_end|>\n"; }
        void Write(string path, Func<string> document, int count) =>
            File.WriteAllLines(Path.Combine(dir, path), Enumerable.Range(0, count).Select(_ => JsonSerializer.Serialize(new { text = document() })));
        Write("train/prose.jsonl", Prose, 40);
        Write("heldout/prose.jsonl", Prose, 5);
        Write("train/sums.jsonl", Sum, 40);
        Write("heldout/sums.jsonl", Sum, 5);
        File.WriteAllText(Path.Combine(dir, "manifest.json"), """
            {"seed": 5, "tokenizer": "tokenizer", "domains": [
              {"name": "prose", "kind": "text", "source": "test", "license": "CC0", "train": "train/prose.jsonl", "heldout": "heldout/prose.jsonl"},
              {"name": "sums", "kind": "task", "source": "test", "license": "CC0", "train": "train/sums.jsonl", "heldout": "heldout/sums.jsonl"}]}
            """);
        return dir;
    }

    /// <summary>Logits of every position from the inference model's prefill path (paged KV cache).</summary>
    private static float[] InferenceLogits(string dir, long[] tokens, ScalarType dtype)
    {
        using var model = MoeForCausalLM.Load(dir, dtype, CPU);
        using var scope = NewDisposeScope();
        using var cache = model.NewCache(blocks: 1 + (tokens.Length + 15) / 16, blockSize: 16);
        var blocks = Enumerable.Range(1, cache.Blocks - 1).ToList();
        var batch = new ForwardBatch
        {
            TokenIds = tokens,
            Sequences = [new SequenceSlice(0, tokens.Length, 0, cache.Slots(blocks, tokens.Length))],
            Cache = cache,
            LogitRows = Enumerable.Range(0, tokens.Length).Select(x => (long)x).ToArray(),
        };
        return model.Forward(batch).data<float>().ToArray();
    }

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "moeserve-training-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}
