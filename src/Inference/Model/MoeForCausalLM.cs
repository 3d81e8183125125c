using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Parallel;
using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// A decoder-only MoE language model (Mixtral or OLMoE) loaded from a Hugging Face checkpoint folder.
/// Holds tensors only; queues and scheduling live in the engine.
/// </summary>
public sealed class MoeForCausalLM : IDisposable
{
    public ModelConfig Config { get; }
    public ScalarType ComputeDtype { get; }

    /// <summary>Dtype of the expert weights and their matrix products (the rest runs in <see cref="ComputeDtype"/>).</summary>
    public ScalarType ExpertDtype { get; }

    /// <summary>
    /// Whether a sequence's outputs are bit-identical whatever else shares its forward pass (on CPU). Without it
    /// they differ by about 1e-6, which bfloat16 experts, rounding their inputs, now and then turn into 1e-3.
    /// </summary>
    public bool BatchInvariant { get; }
    public Device Device { get; }

    /// <summary>Where the experts live and how their devices run.</summary>
    public ExpertParallelPlan ExpertParallel { get; }

    public Tensor embed_tokens { get; } // [V, H]
    public DecoderLayer[] layers { get; }
    public RmsNorm norm { get; }
    public Projection lm_head { get; }  // [H] -> [V] (a transposed copy of the embedding matrix when tied)

    private readonly RotaryEmbedding _rope;
    private readonly WorkerThreads? _workers;
    private readonly WorkerThreads?[] _expertThreads; // [D] per CPU device, when its experts are shared among threads

    private MoeForCausalLM(ModelConfig config, WeightStore weights, ScalarType dtype, ScalarType expertDtype, Device device, ExpertParallelPlan plan,
        bool batchInvariant)
    {
        Config = config;
        ComputeDtype = dtype;
        ExpertDtype = expertDtype;
        BatchInvariant = batchInvariant;
        Device = device;
        ExpertParallel = plan;
        _workers = plan.Concurrent && plan.DeviceCount > 1 ? new WorkerThreads(plan.DeviceCount) : null;
        // GPU kernels already run in parallel; on a CPU device, threads split the layer's experts between them.
        _expertThreads = plan.Devices.Select((d, i) => d.type == DeviceType.CPU && plan.ThreadsPerDevice > 1
            ? new WorkerThreads(plan.ThreadsPerDevice, $"moeserve-experts-{i}") : null).ToArray();
        long v = config.VocabSize, h = config.HiddenSize;
        embed_tokens = weights.Load("model.embed_tokens.weight", [v, h], dtype, device);
        layers = new DecoderLayer[config.NumLayers];
        for (int i = 0; i < layers.Length; i++) layers[i] = new DecoderLayer(config, i, weights, dtype, expertDtype, device, plan, _workers, _expertThreads, batchInvariant);
        norm = new RmsNorm(weights.Load("model.norm.weight", [h], dtype, device), config.RmsNormEps);
        using (var head = config.TieWordEmbeddings && !weights.Contains("lm_head.weight")
            ? embed_tokens.alias()
            : weights.Load("lm_head.weight", [v, h], dtype, device))
            lm_head = new Projection(head);
        _rope = new RotaryEmbedding(config.HeadDim, config.MaxPositionEmbeddings, config.RopeTheta, device);
    }

    /// <summary>Loads config.json and the weights of <paramref name="modelDir"/>.</summary>
    /// <param name="device">Where everything but the experts lives (and the experts too without <paramref name="expertParallel"/>).</param>
    /// <param name="expertParallel">Builds the expert placement once the checkpoint's shape is known; null keeps every expert on <paramref name="device"/>.</param>
    /// <param name="expertDtype">Dtype of the expert weights and products; null: <paramref name="computeDtype"/>.</param>
    /// <param name="batchInvariant">See <see cref="BatchInvariant"/>.</param>
    /// <exception cref="CheckpointException">A file or tensor is missing or malformed; the message names it.</exception>
    /// <exception cref="ArgumentException">The expert-parallel plan does not fit the checkpoint.</exception>
    public static MoeForCausalLM Load(string modelDir, ScalarType computeDtype, Device device, Func<ModelConfig, ExpertParallelPlan>? expertParallel = null,
        ScalarType? expertDtype = null, bool batchInvariant = false)
    {
        var config = ModelConfig.Load(modelDir);
        var plan = expertParallel?.Invoke(config) ?? ExpertParallelPlan.Single(device, config.NumLayers, config.NumExperts);
        if (plan.Placement.Layers != config.NumLayers || plan.Placement.Devices != plan.DeviceCount)
            throw new ArgumentException($"the expert placement covers {plan.Placement.Layers} layers on {plan.Placement.Devices} devices; the model has {config.NumLayers} layers and the plan {plan.DeviceCount} devices");
        using var weights = WeightStore.Open(modelDir);
        using var noGrad = torch.no_grad();
        return new MoeForCausalLM(config, weights, computeDtype, expertDtype ?? computeDtype, device, plan, batchInvariant);
    }

    /// <summary>Allocates the paged key/value memory for <paramref name="blocks"/> blocks of <paramref name="blockSize"/> tokens.</summary>
    public PagedKvCache NewCache(int blocks, int blockSize) =>
        new(Config.NumLayers, blocks, blockSize, Config.NumKvHeads, Config.HeadDim, ComputeDtype, Device);

    /// <summary>Runs one engine step's flat batch through every layer, appending to each sequence's cache.</summary>
    /// <returns>[R, V] float32 logits on the CPU, one row per entry of <see cref="ForwardBatch.LogitRows"/>.</returns>
    public Tensor Forward(ForwardBatch batch)
    {
        using var scope = NewDisposeScope();
        long t = batch.TokenIds.Length;
        var positionsHost = new long[t];
        foreach (var s in batch.Sequences)
        {
            if (s.Past + s.Length > Config.MaxPositionEmbeddings)
                throw new InvalidOperationException($"sequence of {s.Past + s.Length} tokens exceeds max_position_embeddings {Config.MaxPositionEmbeddings}");
            if (s.Slots.Length != s.Past + s.Length)
                throw new ArgumentException($"a sequence with {s.Past} cached and {s.Length} new tokens needs {s.Past + s.Length} slots, got {s.Slots.Length}");
            for (int i = 0; i < s.Length; i++) positionsHost[s.Start + i] = s.Past + i;
        }
        var ids = torch.tensor(batch.TokenIds, device: Device);     // [T]
        var positions = torch.tensor(positionsHost, device: Device); // [T]
        var x = embed_tokens.index_select(0, ids);                   // [T, H]
        using var attention = AttentionInput.Build(batch, _rope.Tables(positions, ComputeDtype), Device,
            BatchInvariant ? AttentionInput.BatchInvariantPositions : 1);
        var routing = batch.Routing ?? BatchRouting.All((int)t, RoutingPolicy.Vanilla);
        var stats = new StepRoutingStats(layers.Length, Config.NumExperts, (int)t, ExpertParallel.DeviceCount);
        for (int i = 0; i < layers.Length; i++) x = layers[i].Forward(x, _rope, attention, routing, stats);
        batch.RoutingStats = stats;
        // A prefill chunk that neither ends its prompt nor wants prompt logprobs asks for no rows.
        if (batch.LogitRows.Length == 0) return torch.empty([0, Config.VocabSize], ScalarType.Float32).MoveToOuterDisposeScope();
        var rows = norm.Forward(x.index_select(0, torch.tensor(batch.LogitRows, device: Device))); // [R, H]
        return lm_head.Forward(rows).to(ScalarType.Float32).cpu().MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        embed_tokens.Dispose();
        foreach (var l in layers) l.Dispose();
        norm.Dispose();
        lm_head.Dispose();
        _rope.Dispose();
        _workers?.Dispose();
        foreach (var t in _expertThreads) t?.Dispose();
    }
}
