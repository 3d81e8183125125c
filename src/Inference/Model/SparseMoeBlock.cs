using MoeServe.Inference.Checkpoint;
using MoeServe.Inference.Parallel;
using MoeServe.Routing;
using TorchSharp;
using static TorchSharp.torch;

namespace MoeServe.Inference.Model;

/// <summary>
/// The sparse mixture-of-experts feed-forward block. The gate scores every token, the routing policy
/// (a pure function in MoeServe.Routing) picks each token's experts and weights, and the experts run on
/// their tokens only: pairs are sorted by expert (device-major, so each device's pairs are contiguous) and
/// counted, and <see cref="ShardedExperts"/> runs every device's experts on its slice.
/// </summary>
/// <remarks>
/// Dimension legend: T tokens in the flat batch, H hidden size, F expert FFN size, E experts, S routing
/// slots per token, N = valid (token, expert) pairs.
/// </remarks>
public sealed class SparseMoeBlock : IDisposable
{
    /// <summary>Router, [H] -> [E] (checkpoint key "gate", [E, H]).</summary>
    public Projection gate { get; }

    private readonly ShardedExperts _experts;
    private readonly GateSemantics _semantics;

    /// <param name="dtype">Dtype of the router and of the hidden states in and out.</param>
    /// <param name="expertDtype">Dtype of the expert weights and their products.</param>
    /// <param name="replicas">[E] devices holding each expert of this layer (indexes into <paramref name="expertDevices"/>).</param>
    /// <param name="workers">Threads that run the devices at once; null runs them in turn.</param>
    /// <param name="expertThreads">[D] threads that share each device's experts (null entries: one thread).</param>
    public SparseMoeBlock(ModelConfig config, string prefix, WeightStore weights, ScalarType dtype, ScalarType expertDtype, Device device,
        int[][] replicas, Device[] expertDevices, WorkerThreads? workers, WorkerThreads?[] expertThreads)
    {
        long h = config.HiddenSize, f = config.IntermediateSize;
        _semantics = new GateSemantics(config.ExpertsPerToken, config.NumExperts, config.RenormalizeTopK);
        using (var router = weights.Load($"{prefix}.gate.weight", [config.NumExperts, h], dtype, device))
            gate = new Projection(router, packable: false); // the router stays on libtorch's float32 product: a tiny [E, H] matrix (FBGEMM measured no faster)
        // Mixtral names the expert matrices w1/w3/w2, OLMoE gate_proj/up_proj/down_proj.
        bool mixtral = config.ModelType == "mixtral";
        string gateName = mixtral ? "w1" : "gate_proj", upName = mixtral ? "w3" : "up_proj", downName = mixtral ? "w2" : "down_proj";
        var gateUp = new Tensor[config.NumExperts];
        var down = new Tensor[config.NumExperts];
        for (int e = 0; e < config.NumExperts; e++)
        {
            using var g = weights.Load($"{prefix}.experts.{e}.{gateName}.weight", [f, h], expertDtype, device);
            using var u = weights.Load($"{prefix}.experts.{e}.{upName}.weight", [f, h], expertDtype, device);
            gateUp[e] = torch.cat([g, u], dim: 0);
            down[e] = weights.Load($"{prefix}.experts.{e}.{downName}.weight", [h, f], expertDtype, device);
        }
        _experts = new ShardedExperts(gateUp, down, replicas, expertDevices, workers, expertThreads);
        foreach (var w in gateUp.Concat(down)) w.Dispose();
    }

    public GateSemantics Semantics => _semantics;

    /// <param name="x">[T, H] normalised hidden states, compute dtype.</param>
    /// <param name="routing">Each token's policy for this step.</param>
    /// <param name="layer">This block's layer index.</param>
    /// <param name="stats">Receives the token-expert pairs each expert executed, and drops and reroutes.</param>
    /// <returns>[T, H] weighted sum of each token's expert outputs, compute dtype.</returns>
    public Tensor Forward(Tensor x, BatchRouting routing, int layer, StepRoutingStats stats)
    {
        using var scope = NewDisposeScope();
        long t = x.size(0);
        var probs = gate.Forward(x).AsFloat32().softmax(1); // [T, E] fp32 router maths
        long routingStart = System.Diagnostics.Stopwatch.GetTimestamp();
        using var routed = LayerRouter.Route(probs, _semantics, routing, layer);
        stats.RoutingSeconds[layer] += System.Diagnostics.Stopwatch.GetElapsedTime(routingStart).TotalSeconds;
        stats.Add(layer, routed);
        var assignment = routed.Assignment;
        long slots = assignment.ExpertIds.size(1);

        // Pairs in token-major order; pair i belongs to token i / S.
        var experts = assignment.ExpertIds.reshape(-1);  // [T*S]
        var weights = assignment.Weights.reshape(-1);    // [T*S]
        var pairs = torch.empty(0, ScalarType.Int64);    // [N] indices of the valid pairs, when some are empty
        if (assignment.MayHaveEmptySlots)
        {
            pairs = experts.ge(Scalars.Zero).nonzero().squeeze(1);
            experts = experts.index_select(0, pairs);
            weights = weights.index_select(0, pairs);
        }
        // Sort pairs by expert (stable: token order within an expert) and count them, then arrange them
        // device-major for the devices. On the host: the counts must reach the host anyway to slice each
        // expert's rows, and for the few hundred pairs of a step it costs less than a tensor sort plus bincount.
        long[] expertIds = experts.ToHostArray<long>();
        var (byExpert, counts) = CountingSort(expertIds, _semantics.NumExperts);
        var (order, replicaRows) = _experts.Arrange(byExpert, counts);
        var orderTensor = torch.tensor(order, device: x.device);                                           // [N]
        var pairIndex = assignment.MayHaveEmptySlots ? pairs.index_select(0, orderTensor) : orderTensor;
        using var slotsScalar = slots.ToScalar(); // outlives the call (see Scalars)
        var sortedTokens = pairIndex.div(slotsScalar, rounding_mode: RoundingMode.floor);                        // [N]
        var sortedWeights = weights.index_select(0, orderTensor);                                          // [N]

        var result = torch.zeros([t, x.size(1)], x.dtype, x.device);
        stats.AddLoads(layer, counts, routing, () => assignment.ExpertIds.ToHostArray<long>());
        if (sortedTokens.size(0) == 0) return result.MoveToOuterDisposeScope(); // every pair dropped
        var (combined, timing) = _experts.Run(x.index_select(0, sortedTokens), replicaRows); // [N, H]
        stats.AddDeviceTiming(layer, timing);
        // Hugging Face casts the routing weights to the hidden dtype before scaling.
        combined.mul_(sortedWeights.As(x.dtype).unsqueeze(1));
        return result.index_add_(0, sortedTokens, combined, Scalars.One).MoveToOuterDisposeScope();
    }

    /// <summary>Stable counting sort of expert ids (also the training model's dispatch).</summary>
    /// <returns>The positions of <paramref name="experts"/> ordered by expert, and each expert's count.</returns>
    public static (long[] Order, long[] Counts) CountingSort(long[] experts, int numExperts)
    {
        var counts = new long[numExperts];
        foreach (var e in experts) counts[e]++;
        var next = new long[numExperts];
        for (int e = 1; e < numExperts; e++) next[e] = next[e - 1] + counts[e - 1];
        var order = new long[experts.Length];
        for (int i = 0; i < experts.Length; i++) order[next[experts[i]]++] = i;
        return (order, counts);
    }

    public void Dispose()
    {
        gate.Dispose();
        _experts.Dispose();
    }
}
