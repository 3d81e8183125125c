using MoeServe.Inference.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoeServe.Training.Model;

/// <summary>The output of a sparse MoE block.</summary>
/// <param name="Output">[N, H] weighted sum of each token's expert outputs.</param>
/// <param name="AuxLoss">Scalar float32 load-balancing loss of this block (see <see cref="LoadBalancing"/>).</param>
/// <param name="ExpertCounts">[E] token-expert assignments per expert in this pass.</param>
public sealed record MoeOutput(Tensor Output, Tensor AuxLoss, long[] ExpertCounts);

/// <summary>
/// Mixtral's sparse mixture-of-experts feed-forward block for training. Router softmax in fp32, the top-k
/// experts per token (ties to the lower expert id, as the inference router), their probabilities
/// renormalised to sum to 1. Dispatch is sparse: (token, expert) pairs are sorted by expert, each expert
/// runs on its contiguous slice of gathered rows (index_select), and the weighted outputs are scattered
/// back with index_add. Parameters: gate [E, H] and experts.{e}.{w1,w2,w3}.
/// </summary>
/// <remarks>Dimension legend: N tokens (B * L), H hidden, E experts, k experts per token, P = N * k pairs.</remarks>
public sealed class SparseMoeBlock : nn.Module<Tensor, MoeOutput>
{
    private readonly Linear gate;
    private readonly ModuleList<MixtralExpert> experts;
    private readonly int _topK, _numExperts;
    private readonly ScalarType _compute;

    public SparseMoeBlock(ModelConfig config, ScalarType compute) : base(nameof(SparseMoeBlock))
    {
        _compute = compute;
        _topK = config.ExpertsPerToken;
        _numExperts = config.NumExperts;
        gate = nn.Linear(config.HiddenSize, config.NumExperts, hasBias: false);
        experts = new ModuleList<MixtralExpert>();
        for (int e = 0; e < config.NumExperts; e++) experts.Add(new MixtralExpert(config, compute));
        RegisterComponents();
    }

    /// <param name="x">[N, H] normalised hidden states, float32.</param>
    /// <returns>Output [N, H] float32.</returns>
    public override MoeOutput forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0];
        var probs = gate.forward(x).softmax(1);                                        // [N, E] fp32 router maths (gate stays fp32)
        var (sortedProbs, sortedIds) = probs.sort(dim: 1, descending: true, stable: true);
        var topProbs = sortedProbs.narrow(1, 0, _topK);                                // [N, k]
        var topIds = sortedIds.narrow(1, 0, _topK);                                    // [N, k]
        var weights = topProbs / topProbs.sum(1, keepdim: true);                       // [N, k] renormalised, fp32

        // Sort the pairs by expert on the host (stable: token order within an expert); the counts must
        // reach the host anyway to slice each expert's rows.
        var (order, counts) = MoeServe.Inference.Model.SparseMoeBlock.CountingSort(topIds.reshape(-1).cpu().data<long>().ToArray(), _numExperts);
        var orderTensor = torch.tensor(order, device: x.device);                       // [P]
        var sortedTokens = orderTensor.div(_topK, rounding_mode: RoundingMode.floor);  // [P] token of each pair
        var sortedWeights = weights.reshape(-1).index_select(0, orderTensor);          // [P]

        var inputs = MixedPrecision.Cast(x, _compute).index_select(0, sortedTokens);   // [P, H] compute dtype
        // split (not narrow): its backward is one concatenation, where each narrow's would zero-fill a [P, H] gradient.
        var slices = inputs.split(counts, 0);                                          // E x [n_e, H]
        var outputs = new List<Tensor>(_numExperts);
        for (int e = 0; e < _numExperts; e++)
            if (counts[e] > 0) outputs.Add(experts[e].forward(slices[e]));             // [n_e, H]
        // Weighted and summed in fp32 (a token's k contributions add up in the residual stream's precision).
        var combined = MixedPrecision.Cast(outputs.Count == 1 ? outputs[0] : torch.cat(outputs, 0), ScalarType.Float32) * sortedWeights.unsqueeze(1); // [P, H]
        var output = torch.zeros([n, x.shape[1]], ScalarType.Float32, x.device).index_add(0, sortedTokens, combined, 1.0); // [N, H]
        var aux = LoadBalancing.AuxLoss(probs, counts);
        return new MoeOutput(output.MoveToOuterDisposeScope(), aux.MoveToOuterDisposeScope(), counts);
    }
}
